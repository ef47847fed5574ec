import subprocess

from sensor.capture import read_packets


def test_mawi_totals_equal_capinfos(mawi_pcap):
    out = subprocess.run(["capinfos", "-T", "-m", "-c", "-d", str(mawi_pcap)], capture_output=True, text=True, check=True).stdout
    ref = out.strip().splitlines()[-1].split(",")
    n = b = 0
    for batch in read_packets(mawi_pcap):
        n += len(batch)
        b += int(batch["wire_len"].sum())
    assert (n, b) == (int(ref[-2]), int(ref[-1]))
