"""flowlstm-train: offline retraining on Spark; imports the sensor's feature code."""
