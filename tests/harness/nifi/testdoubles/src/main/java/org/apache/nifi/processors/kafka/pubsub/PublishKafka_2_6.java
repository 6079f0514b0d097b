package org.apache.nifi.processors.kafka.pubsub;

import java.io.ByteArrayOutputStream;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.Producer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.nifi.annotation.behavior.InputRequirement;
import org.apache.nifi.annotation.documentation.CapabilityDescription;
import org.apache.nifi.annotation.documentation.Tags;
import org.apache.nifi.annotation.lifecycle.OnScheduled;
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
import org.apache.nifi.processor.util.StandardValidators;

/**
 * TEST DOUBLE of Apache NiFi's PublishKafka_2_6 (nifi-kafka-2-6-nar), which the package
 * registry reachable from this project's machines does not serve.
 *
 * <p>It has the real processor's class name, property names, allowable values, defaults and
 * relationships for everything nifi/quotes-flow.xml sets, so the committed template is loaded,
 * validated and run unchanged by the harness NiFi. It publishes each FlowFile's content as one
 * Kafka record with the Kafka 2.6 producer and routes it to success once the broker has
 * acknowledged it, or to failure. Not supported (invalid if set): transactions, security
 * protocols other than PLAINTEXT, demarcators, keys, custom partitioners, headers.
 */
@Tags({"Apache", "Kafka", "Put", "Send", "Message", "PubSub", "2.6", "test-double"})
@CapabilityDescription("Test double of PublishKafka_2_6: one Kafka record per FlowFile.")
@InputRequirement(InputRequirement.Requirement.INPUT_REQUIRED)
public class PublishKafka_2_6 extends AbstractProcessor {
    static final String ROUTE_TO_FAILURE = "Route to Failure";
    static final String ROLLBACK = "Rollback";

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
            .required(true).allowableValues("0", "1", "all").defaultValue("0").build();
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

    static final Relationship REL_SUCCESS = new Relationship.Builder().name("success")
            .description("FlowFiles for which all content was sent to Kafka.").build();
    static final Relationship REL_FAILURE = new Relationship.Builder().name("failure")
            .description("Any FlowFile that cannot be sent to Kafka will be routed to this Relationship")
            .build();

    private static final List<PropertyDescriptor> PROPERTIES = List.of(
            BOOTSTRAP_SERVERS, SECURITY_PROTOCOL, TOPIC, DELIVERY_GUARANTEE, METADATA_WAIT_TIME,
            ACK_WAIT_TIME, MAX_REQUEST_SIZE, COMPRESSION_CODEC, USE_TRANSACTIONS, FAILURE_STRATEGY);
    private static final int BATCH = 500;

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

    @OnScheduled
    public void createProducer(ProcessContext context) {
        Properties config = new Properties();
        config.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG,
                context.getProperty(BOOTSTRAP_SERVERS).evaluateAttributeExpressions().getValue());
        config.put(ProducerConfig.ACKS_CONFIG, context.getProperty(DELIVERY_GUARANTEE).getValue());
        config.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, context.getProperty(COMPRESSION_CODEC).getValue());
        config.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, String.valueOf(context.getProperty(METADATA_WAIT_TIME)
                .evaluateAttributeExpressions().asTimePeriod(TimeUnit.MILLISECONDS)));
        config.put(ProducerConfig.MAX_REQUEST_SIZE_CONFIG,
                String.valueOf(context.getProperty(MAX_REQUEST_SIZE).asDataSize(DataUnit.B).intValue()));
        config.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG,
                String.valueOf("all".equals(context.getProperty(DELIVERY_GUARANTEE).getValue())));
        config.put(ProducerConfig.MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION, "1");
        // The Kafka client loads classes through the context class loader; point it at the NAR's.
        Thread thread = Thread.currentThread();
        ClassLoader previous = thread.getContextClassLoader();
        thread.setContextClassLoader(getClass().getClassLoader());
        try {
            producer = new KafkaProducer<>(config, new ByteArraySerializer(), new ByteArraySerializer());
        } finally {
            thread.setContextClassLoader(previous);
        }
    }

    @OnStopped
    public void closeProducer() {
        if (producer != null) {
            producer.close(java.time.Duration.ofSeconds(10));
            producer = null;
        }
    }

    @Override
    public void onTrigger(ProcessContext context, ProcessSession session) {
        List<FlowFile> flowFiles = session.get(BATCH);
        if (flowFiles.isEmpty()) {
            return;
        }
        long ackWaitMs = context.getProperty(ACK_WAIT_TIME).asTimePeriod(TimeUnit.MILLISECONDS);
        boolean rollback = ROLLBACK.equals(context.getProperty(FAILURE_STRATEGY).getValue());
        List<Future<RecordMetadata>> sent = new ArrayList<>(flowFiles.size());
        for (FlowFile flowFile : flowFiles) {
            String topic = context.getProperty(TOPIC).evaluateAttributeExpressions(flowFile).getValue();
            ByteArrayOutputStream content = new ByteArrayOutputStream();
            session.exportTo(flowFile, content);
            sent.add(producer.send(new ProducerRecord<>(topic, null, content.toByteArray())));
        }
        producer.flush();
        for (int i = 0; i < flowFiles.size(); i++) {
            FlowFile flowFile = flowFiles.get(i);
            try {
                RecordMetadata meta = sent.get(i).get(ackWaitMs, TimeUnit.MILLISECONDS);
                flowFile = session.putAllAttributes(flowFile, Map.of(
                        "msg.count", "1",
                        "kafka.topic", meta.topic(),
                        "kafka.partition", String.valueOf(meta.partition()),
                        "kafka.offset", String.valueOf(meta.offset())));
                session.transfer(flowFile, REL_SUCCESS);
            } catch (Exception e) {
                getLogger().error("Failed to send {} to Kafka", flowFile, e);
                if (rollback) {
                    session.rollback(true);
                    context.yield();
                    return;
                }
                session.transfer(session.penalize(flowFile), REL_FAILURE);
            }
        }
    }
}
