##! Zeek notices for flowlstm-sensor's alerts.
##!
##! flowlstm-sensor writes its alerts as a Zeek notice log (``--zeek-notice
##! FILE``, or ``outputs.zeek-notice.filename`` in sensor.yaml).  This script
##! follows that file with the Input framework (ASCII reader, streaming mode)
##! and raises one notice per line, so the alerts pass through the local notice
##! policy (suppression, e-mail, hooks) and land in Zeek's own notice.log.

@load base/frameworks/cluster
@load base/frameworks/input
@load base/frameworks/notice

module FlowLSTM;

export {
	## One notice type per anomaly kind.  The names are the sensor's own
	## ``note`` values, so the column reads straight into Notice::Type.
	redef enum Notice::Type += {
		## Scored anomalous, of no more specific shape.
		Anomaly,
		## Many sources to one destination (flood, DDoS).
		Flood,
		## One source probing many destinations or ports.
		Scan,
		## Unsolicited responses from a service port (reflection).
		Reflection,
	};

	## The sensor's Zeek-format notice log: its ``--zeek-notice FILE``.
	const log_path = "/var/log/flowlstm/notice.log" &redef;

	## Skip lines whose ts is older than this when read (0 secs: raise
	## every line).  The stream reads the file from its start whenever Zeek
	## starts, so a live deployment sets this to keep a restart from raising
	## again what the file already held.
	const max_age = 0secs &redef;

	## How often to look for a rotated log (0 secs: never).  The ASCII
	## reader keeps reading the file it opened, so after a rename or
	## truncation the stream is started again on the new file.
	const rotation_check_interval = 15secs &redef;

	## The flow's endpoints, the log's id.* columns.  Ports are absent when
	## the sensor never saw the transport header.
	type Endpoints: record {
		orig_h: addr;
		orig_p: port &optional;
		resp_h: addr;
		resp_p: port &optional;
	};

	## The columns of the sensor's log that the notice needs.
	type Alert: record {
		ts: time;
		uid: string;
		id: Endpoints;
		# A string, not transport_proto: sensors up to 0.1.0 wrote protocols
		# Zeek's enum lacks (sctp, gre, esp; now unknown_transport), and an
		# enum value the type does not have makes the reader drop the line.
		proto: string;
		note: Notice::Type;
		## The alert's signature and every head's score.
		msg: string;
		## The window of seconds the model scored.
		sub: string;
		src: addr;
		dst: addr;
		p: port &optional;
		## Alerts the sensor's thresholding folded into this one.
		n: count &optional;
		## The sensor's thresholding period.
		suppress_for: interval;
	};

	## Raised for each line of the log that is not skipped as too old.
	global alert: event(a: Alert);
}

global line: event(desc: Input::EventDescription, tpe: Input::Event, a: Alert);
global watch: event();

global generation = 0;
global last_size = -1.0;
global vanished = F;

function stream_name(): string
	{
	return fmt("flowlstm-notice-%d", generation);
	}

function start_stream()
	{
	++generation;
	Input::add_event([$source=log_path, $name=stream_name(),
	    $reader=Input::READER_ASCII, $mode=Input::STREAM, $fields=Alert,
	    $want_record=T, $ev=line]);
	}

function transport(name: string): transport_proto
	{
	switch ( name )
		{
		case "tcp":
			return tcp;
		case "udp":
			return udp;
		case "icmp":
			return icmp;
		default:
			return unknown_transport;
		}
	}

# The reader gives ports without their protocol; Zeek's conn_id (and the
# Community ID computed from it) needs them with it.
function with_proto(p: port, t: transport_proto): port
	{
	return count_to_port(port_to_count(p), t);
	}

event line(desc: Input::EventDescription, tpe: Input::Event, a: Alert)
	{
	if ( max_age > 0secs && a$ts < current_time() - max_age )
		return;

	event FlowLSTM::alert(a);

	local t = transport(a$proto);
	local n: Notice::Info = [$ts=a$ts, $uid=a$uid, $note=a$note, $msg=a$msg,
	    $sub=a$sub, $src=a$src, $dst=a$dst, $suppress_for=a$suppress_for,
	    $identifier=a$uid];
	if ( t != unknown_transport )
		n$proto = t;
	if ( a?$p )
		n$p = with_proto(a$p, t);
	if ( a?$n )
		n$n = a$n;

	if ( t != unknown_transport && a$id?$orig_p && a$id?$resp_p )
		{
		n$id = [$orig_h=a$id$orig_h, $orig_p=with_proto(a$id$orig_p, t),
		    $resp_h=a$id$resp_h, $resp_p=with_proto(a$id$resp_p, t)];
@ifdef ( community_id_v1 )
		# The same Community ID as the sensor's EVE alert for this flow,
		# so notice.log, EVE and conn.log join on it.
		local cid = community_id_v1(n$id);
		n$sub = fmt("%s, community_id %s", a$sub, cid);
		n$identifier = cid;
@endif
		}

	NOTICE(n);
	}

event watch()
	{
	local size = file_size(log_path);

	if ( size < 0.0 )
		{
		if ( last_size >= 0.0 )
			vanished = T;
		}
	else
		{
		if ( vanished || size < last_size )
			{
			Input::remove(stream_name());
			start_stream();
			vanished = F;
			}
		last_size = size;
		}

	schedule rotation_check_interval { watch() };
	}

event zeek_init()
	{
	# One reader in a cluster: the manager, where notices are decided anyway.
	if ( Cluster::is_enabled() && Cluster::local_node_type() != Cluster::MANAGER )
		return;

	start_stream();
	last_size = file_size(log_path);

	if ( rotation_check_interval > 0secs )
		schedule rotation_check_interval { watch() };
	}
