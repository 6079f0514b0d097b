"""Python stand-in for the NiFi flow "Quotes to Kafka" (GetHTTP -> SplitJson -> PublishKafka).

Why it exists: NiFi is heavy to run for a quick experiment or a benchmark; this does the same
three steps with the same record format (one compact JSON object per Kafka record, acks=all),
so the consumer cannot tell which one fed the topic. ``load`` adds synthetic traffic at a fixed
rate, optionally with a share of invalid records, for the benchmark.
"""

__version__ = "0.1.0"
