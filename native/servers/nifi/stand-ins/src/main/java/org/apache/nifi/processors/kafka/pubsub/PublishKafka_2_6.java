package org.apache.nifi.processors.kafka.pubsub;

import java.io.ByteArrayOutputStream;
import java.nio.charset.Charset;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.regex.Pattern;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.Producer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.header.internals.RecordHeaders;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.nifi.annotation.behavior.InputRequirement;
import org.apache.nifi.annotation.documentation.CapabilityDescription;
import org.apache.nifi.annotation.documentation.Tags;
import org.apache.nifi.annotation.lifecycle.OnStopped;
import org.apache.nifi.components.PropertyDescriptor;
import org.apache.nifi.components.ValidationContext;
import org.apache.nifi.components.ValidationResult;
import org.apache.nifi.expression.ExpressionLanguageScope;
import org.apache.nifi.flowfile.FlowFile;
import org.apache.nifi.processor.AbstractProcessor;
import org.apache.nifi.processor.DataUnit;
import org.apache.nifi.processor.ProcessContext;
import org.apache.nifi.processor.ProcessSession;
import org.apache.nifi.processor.Relationship;
import org.apache.nifi.processor.util.FlowFileFilters;
import org.apache.nifi.processor.util.StandardValidators;

/**
 * TEST DOUBLE of Apache NiFi's PublishKafka_2_6 (nifi-kafka-2-6-nar), which the package
 * registry reachable from this project's machines does not serve.
 *
 * <p>Written from a reading of NiFi 1.28.1's PublishKafka_2_6, PublishKafkaUtil, PublisherLease
 * and InFlightMessageTracker, to behave as they do for every setting nifi/quotes-flow.xml uses:
 * <ul>
 *   <li>one trigger takes a batch of up to 500 FlowFiles or 1 MB (the first FlowFile always);</li>
 *   <li>each FlowFile's content is one record; attributes whose names match
 *       attribute-name-regex become record headers, encoded with message-header-encoding;</li>
 *   <li>a FlowFile larger than max.request.size fails without being sent;</li>
 *   <li>the batch is flushed and acknowledgements awaited for ack.wait.time; if any record
 *       failed, EVERY FlowFile of the batch goes to the failure strategy (Route to Failure:
 *       all to 'failure', not penalized; Rollback: the session is rolled back), although the
 *       other records were delivered: a retry then sends them again;</li>
 *   <li>otherwise each FlowFile goes to 'success' with msg.count=1;</li>
 *   <li>the producer gets only the Kafka settings the real processor passes (bootstrap.servers,
 *       acks, max.block.ms, max.request.size, compression.type, security.protocol), so idempotence,
 *       retries and in-flight requests keep the Kafka 2.6 client's defaults; a failure discards
 *       the producer, as the real processor poisons its lease.</li>
 * </ul>
 * Not supported (invalid if set): transactions, security protocols other than PLAINTEXT.
 * Not present: demarcators, keys, partitioners, dynamic Kafka properties.
 */
@Tags({"Apache", "Kafka", "Put", "Send", "Message", "PubSub", "2.6", "test-double"})
@CapabilityDescription("Test double of PublishKafka_2_6: one Kafka record per FlowFile, batches fail as a whole.")
@InputRequirement(InputRequirement.Requirement.INPUT_REQUIRED)
public class PublishKafka_2_6 extends AbstractProcessor {
    static final String ROUTE_TO_FAILURE = "Route to Failure";
    static final String ROLLBACK = "Rollback";
    // PublishKafkaUtil.pollFlowFiles in 1.28.1
    static final int MAX_BATCH_FLOWFILES = 500;
    static final double MAX_BATCH_MB = 1;

    static final PropertyDescriptor BOOTSTRAP_SERVERS = new PropertyDescriptor.Builder()
            .name("bootstrap.servers").displayName("Kafka Brokers")
            .description("Comma-separated list of Kafka Brokers in the format host:port")
            .required(true).addValidator(StandardValidators.NON_BLANK_VALIDATOR)
            .expressionLanguageSupported(ExpressionLanguageScope.VARIABLE_REGISTRY)
            .defaultValue("localhost:9092").build();
    static final PropertyDescriptor SECURITY_PROTOCOL = new PropertyDescriptor.Builder()
            .name("security.protocol").displayName("Security Protocol")
            .required(true).allowableValues("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
            .defaultValue("PLAINTEXT").build();
    static final PropertyDescriptor TOPIC = new PropertyDescriptor.Builder()
            .name("topic").displayName("Topic Name")
            .required(true).addValidator(StandardValidators.NON_BLANK_VALIDATOR)
            .expressionLanguageSupported(ExpressionLanguageScope.FLOWFILE_ATTRIBUTES).build();
    static final PropertyDescriptor DELIVERY_GUARANTEE = new PropertyDescriptor.Builder()
            .name("acks").displayName("Delivery Guarantee")
            .required(true).allowableValues("0", "1", "all").defaultValue("all").build();
    static final PropertyDescriptor METADATA_WAIT_TIME = new PropertyDescriptor.Builder()
            .name("max.block.ms").displayName("Max Metadata Wait Time")
            .required(true).addValidator(StandardValidators.TIME_PERIOD_VALIDATOR)
            .expressionLanguageSupported(ExpressionLanguageScope.VARIABLE_REGISTRY)
            .defaultValue("5 sec").build();
    static final PropertyDescriptor ACK_WAIT_TIME = new PropertyDescriptor.Builder()
            .name("ack.wait.time").displayName("Acknowledgment Wait Time")
            .required(true).addValidator(StandardValidators.TIME_PERIOD_VALIDATOR)
            .defaultValue("5 secs").build();
    static final PropertyDescriptor MAX_REQUEST_SIZE = new PropertyDescriptor.Builder()
            .name("max.request.size").displayName("Max Request Size")
            .required(true).addValidator(StandardValidators.DATA_SIZE_VALIDATOR)
            .defaultValue("1 MB").build();
    static final PropertyDescriptor COMPRESSION_CODEC = new PropertyDescriptor.Builder()
            .name("compression.type").displayName("Compression Type")
            .required(true).allowableValues("none", "gzip", "snappy", "lz4")
            .defaultValue("none").build();
    static final PropertyDescriptor USE_TRANSACTIONS = new PropertyDescriptor.Builder()
            .name("use-transactions").displayName("Use Transactions")
            .required(true).allowableValues("true", "false").defaultValue("true").build();
    static final PropertyDescriptor FAILURE_STRATEGY = new PropertyDescriptor.Builder()
            .name("Failure Strategy").displayName("Failure Strategy")
            .required(true).allowableValues(ROUTE_TO_FAILURE, ROLLBACK)
            .defaultValue(ROUTE_TO_FAILURE).build();
    static final PropertyDescriptor ATTRIBUTE_NAME_REGEX = new PropertyDescriptor.Builder()
            .name("attribute-name-regex").displayName("Attributes to Send as Headers (Regex)")
            .required(false).addValidator(StandardValidators.REGULAR_EXPRESSION_VALIDATOR).build();
    static final PropertyDescriptor MESSAGE_HEADER_ENCODING = new PropertyDescriptor.Builder()
            .name("message-header-encoding").displayName("Message Header Encoding")
            .required(false).addValidator(StandardValidators.CHARACTER_SET_VALIDATOR)
            .defaultValue("UTF-8").build();

    static final Relationship REL_SUCCESS = new Relationship.Builder().name("success")
            .description("FlowFiles for which all content was sent to Kafka.").build();
    static final Relationship REL_FAILURE = new Relationship.Builder().name("failure")
            .description("Any FlowFile that cannot be sent to Kafka will be routed to this Relationship")
            .build();

    private static final List<PropertyDescriptor> PROPERTIES = List.of(
            BOOTSTRAP_SERVERS, TOPIC, USE_TRANSACTIONS, FAILURE_STRATEGY, DELIVERY_GUARANTEE,
            ATTRIBUTE_NAME_REGEX, MESSAGE_HEADER_ENCODING, SECURITY_PROTOCOL, MAX_REQUEST_SIZE,
            ACK_WAIT_TIME, METADATA_WAIT_TIME, COMPRESSION_CODEC);

    private volatile Producer<byte[], byte[]> producer;

    @Override
    protected List<PropertyDescriptor> getSupportedPropertyDescriptors() {
        return PROPERTIES;
    }

    @Override
    public Set<Relationship> getRelationships() {
        return Set.of(REL_SUCCESS, REL_FAILURE);
    }

    @Override
    protected Collection<ValidationResult> customValidate(ValidationContext context) {
        List<ValidationResult> results = new ArrayList<>();
        if (context.getProperty(USE_TRANSACTIONS).asBoolean()) {
            results.add(unsupported(USE_TRANSACTIONS, "transactions"));
        }
        if (!"PLAINTEXT".equals(context.getProperty(SECURITY_PROTOCOL).getValue())) {
            results.add(unsupported(SECURITY_PROTOCOL, "security protocols other than PLAINTEXT"));
        }
        return results;
    }

    private static ValidationResult unsupported(PropertyDescriptor property, String what) {
        return new ValidationResult.Builder().subject(property.getDisplayName()).valid(false)
                .explanation("the PublishKafka_2_6 test double does not support " + what).build();
    }

    private Producer<byte[], byte[]> producer(ProcessContext context) {
        Producer<byte[], byte[]> current = producer;
        if (current != null) {
            return current;
        }
        Properties config = new Properties();
        config.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG,
                context.getProperty(BOOTSTRAP_SERVERS).evaluateAttributeExpressions().getValue());
        config.put(ProducerConfig.ACKS_CONFIG, context.getProperty(DELIVERY_GUARANTEE).getValue());
        config.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, context.getProperty(COMPRESSION_CODEC).getValue());
        config.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, String.valueOf(context.getProperty(METADATA_WAIT_TIME)
                .evaluateAttributeExpressions().asTimePeriod(TimeUnit.MILLISECONDS)));
        config.put(ProducerConfig.MAX_REQUEST_SIZE_CONFIG, String.valueOf(maxMessageSize(context)));
        config.put("security.protocol", context.getProperty(SECURITY_PROTOCOL).getValue());
        // The Kafka client loads classes through the context class loader; point it at the NAR's.
        Thread thread = Thread.currentThread();
        ClassLoader previous = thread.getContextClassLoader();
        thread.setContextClassLoader(getClass().getClassLoader());
        try {
            current = new KafkaProducer<>(config, new ByteArraySerializer(), new ByteArraySerializer());
        } finally {
            thread.setContextClassLoader(previous);
        }
        producer = current;
        return current;
    }

    private static int maxMessageSize(ProcessContext context) {
        return context.getProperty(MAX_REQUEST_SIZE).asDataSize(DataUnit.B).intValue();
    }

    @OnStopped
    public void closeProducer() {
        Producer<byte[], byte[]> current = producer;
        producer = null;
        if (current != null) {
            current.close(Duration.ofSeconds(10));
        }
    }

    /** Outcome of one batch: FlowFiles acknowledged, and the first failure per FlowFile. */
    private static final class Batch {
        final Map<FlowFile, Exception> failures = new IdentityHashMap<>();
        final CountDownLatch outstanding;

        Batch(int sent) {
            outstanding = new CountDownLatch(sent);
        }

        synchronized void fail(FlowFile flowFile, Exception cause) {
            failures.putIfAbsent(flowFile, cause);
        }

        synchronized boolean failed() {
            return !failures.isEmpty();
        }
    }

    @Override
    public void onTrigger(ProcessContext context, ProcessSession session) {
        List<FlowFile> flowFiles = session.get(
                FlowFileFilters.newSizeBasedFilter(MAX_BATCH_MB, DataUnit.MB, MAX_BATCH_FLOWFILES));
        if (flowFiles.isEmpty()) {
            return;
        }
        Producer<byte[], byte[]> kafka = producer(context);
        int maxMessageSize = maxMessageSize(context);
        long ackWaitMs = context.getProperty(ACK_WAIT_TIME).asTimePeriod(TimeUnit.MILLISECONDS);
        String regex = context.getProperty(ATTRIBUTE_NAME_REGEX).getValue();
        Pattern headerNames = regex == null ? null : Pattern.compile(regex);
        Charset headerCharset = Charset.forName(context.getProperty(MESSAGE_HEADER_ENCODING).getValue());

        List<FlowFile> batchFlowFiles = new ArrayList<>(flowFiles.size());
        List<ProducerRecord<byte[], byte[]>> records = new ArrayList<>(flowFiles.size());

        List<FlowFile> tooLarge = new ArrayList<>();
        for (FlowFile flowFile : flowFiles) {
            if (!isScheduled()) {
                session.transfer(flowFile); // stopped: back to the queue, unsent
                continue;
            }
            batchFlowFiles.add(flowFile);
            if (flowFile.getSize() > maxMessageSize) {
                tooLarge.add(flowFile);
                continue;
            }
            String topic = context.getProperty(TOPIC).evaluateAttributeExpressions(flowFile).getValue();
            ByteArrayOutputStream content = new ByteArrayOutputStream((int) flowFile.getSize());
            session.exportTo(flowFile, content);
            RecordHeaders headers = new RecordHeaders();
            if (headerNames != null) {
                for (Map.Entry<String, String> attribute : flowFile.getAttributes().entrySet()) {
                    if (headerNames.matcher(attribute.getKey()).matches()) {
                        headers.add(attribute.getKey(), attribute.getValue().getBytes(headerCharset));
                    }
                }
            }
            records.add(new ProducerRecord<byte[], byte[]>(topic, (Integer) null, (byte[]) null, content.toByteArray(), headers));
        }
        if (batchFlowFiles.isEmpty()) {
            return;
        }
        Batch batch = new Batch(records.size());
        for (FlowFile flowFile : tooLarge) {
            batch.fail(flowFile, new IllegalArgumentException("A message in the stream exceeds the maximum allowed message size of "
                    + maxMessageSize + " bytes."));
        }
        int r = 0;
        for (FlowFile flowFile : batchFlowFiles) {
            if (tooLarge.contains(flowFile)) {
                continue;
            }
            final FlowFile sent = flowFile;
            try {
                kafka.send(records.get(r++), (metadata, exception) -> {
                    if (exception != null) {
                        batch.fail(sent, exception);
                    }
                    batch.outstanding.countDown();
                });
            } catch (RuntimeException e) {
                batch.fail(sent, e);
                batch.outstanding.countDown();
            }
        }
        boolean acknowledged;
        try {
            kafka.flush();
            acknowledged = batch.outstanding.await(ackWaitMs, TimeUnit.MILLISECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            acknowledged = false;
        }
        if (!acknowledged || batch.failed()) {
            synchronized (batch) {
                batch.failures.forEach((flowFile, cause) ->
                        getLogger().error("Failed to send {} to Kafka", flowFile, cause));
            }
            if (!acknowledged) {
                getLogger().warn("Timed out while waiting for an acknowledgement from Kafka; some FlowFiles may be "
                        + "transferred to 'failure' even though they were received by Kafka");
            }
            getLogger().info("Failed to send FlowFile to kafka; transferring to specified failure strategy");
            closeProducer(); // a failed lease is poisoned and its producer closed
            if (ROLLBACK.equals(context.getProperty(FAILURE_STRATEGY).getValue())) {
                session.rollback();
            } else {
                session.transfer(batchFlowFiles, REL_FAILURE);
            }
            return;
        }
        for (FlowFile flowFile : batchFlowFiles) {
            FlowFile success = session.putAttribute(flowFile, "msg.count", "1");
            session.adjustCounter("Messages Sent", 1, true);
            session.transfer(success, REL_SUCCESS);
        }
    }
}
