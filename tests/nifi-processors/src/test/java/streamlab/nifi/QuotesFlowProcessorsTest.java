package streamlab.nifi;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.BufferedReader;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import javax.xml.bind.JAXBContext;
import javax.xml.stream.XMLInputFactory;
import javax.xml.stream.XMLStreamReader;
import org.apache.nifi.processor.Processor;
import org.apache.nifi.processors.standard.GetHTTP;
import org.apache.nifi.processors.standard.SplitJson;
import org.apache.nifi.util.MockFlowFile;
import org.apache.nifi.util.TestRunner;
import org.apache.nifi.util.TestRunners;
import org.apache.nifi.web.api.dto.BundleDTO;
import org.apache.nifi.web.api.dto.ProcessGroupDTO;
import org.apache.nifi.web.api.dto.ProcessorDTO;
import org.apache.nifi.web.api.dto.TemplateDTO;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Apache NiFi 1.28.1's own GetHTTP and SplitJson, configured with exactly the properties that
 * nifi/quotes-flow.xml sets (read from that file, not copied, with NiFi 1.28.1's template
 * classes), run with Apache's nifi-mock.
 *
 * <p>Why: the harness NiFi that runs the whole template is 1.18.0, so this is where the 1.28.1
 * processors of the compose stack are checked: that the template's settings are valid for them,
 * that GetHTTP fetches the local quotes API (a real server on 127.0.0.1), and that SplitJson
 * turns its answer into one FlowFile per quote, with the failure route and the null
 * representation the template relies on.
 */
class QuotesFlowProcessorsTest {
    private static final String GET_HTTP = "org.apache.nifi.processors.standard.GetHTTP";
    private static final String SPLIT_JSON = "org.apache.nifi.processors.standard.SplitJson";
    private static final Set<String> QUOTE_FIELDS = Set.of("quote", "character", "image", "characterDirection");
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final long API_START_TIMEOUT_S = 15;

    private static Process quotesApi;
    private static String quotesApiBase;

    @BeforeAll
    static void startQuotesApi() throws Exception {
        // The project's own offline quotes API, as the compose stack runs it, on a free port.
        ProcessBuilder builder = new ProcessBuilder(
                System.getProperty("streamlab.python", "python3"),
                required("streamlab.quotesApi"),
                "--host", "127.0.0.1", "--port", "0", "--seed", "7", "--malformed-rate", "0");
        builder.redirectError(ProcessBuilder.Redirect.DISCARD);
        quotesApi = builder.start();
        BufferedReader out = new BufferedReader(new InputStreamReader(quotesApi.getInputStream(), StandardCharsets.UTF_8));
        String line = CompletableFuture.supplyAsync(() -> {
            try {
                return out.readLine();
            } catch (Exception e) {
                return null;
            }
        }).get(API_START_TIMEOUT_S, TimeUnit.SECONDS);
        Matcher address = Pattern.compile("listening on (http://127\\.0\\.0\\.1:\\d+)").matcher(String.valueOf(line));
        assertTrue(address.find(), "quotes API did not start: first line " + line);
        quotesApiBase = address.group(1);
    }

    @AfterAll
    static void stopQuotesApi() throws Exception {
        if (quotesApi != null) {
            quotesApi.destroy();
            if (!quotesApi.waitFor(10, TimeUnit.SECONDS)) {
                quotesApi.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
            }
        }
    }

    private static String required(String property) {
        String value = System.getProperty(property);
        assertNotNull(value, "system property " + property + " is not set (see pom.xml)");
        return value;
    }

    /**
     * nifi/quotes-flow.xml read as NiFi 1.28.1's template upload reads it: JAXB into its
     * TemplateDTO, from a stream reader that refuses DTDs.
     */
    static TemplateDTO template() throws Exception {
        XMLInputFactory factory = XMLInputFactory.newInstance();
        factory.setProperty(XMLInputFactory.SUPPORT_DTD, false);
        factory.setProperty(XMLInputFactory.IS_SUPPORTING_EXTERNAL_ENTITIES, false);
        try (InputStream in = Files.newInputStream(Path.of(required("streamlab.template")))) {
            XMLStreamReader reader = factory.createXMLStreamReader(in);
            return JAXBContext.newInstance(TemplateDTO.class).createUnmarshaller()
                    .unmarshal(reader, TemplateDTO.class).getValue();
        }
    }

    static List<ProcessorDTO> processors() throws Exception {
        Set<ProcessGroupDTO> groups = template().getSnippet().getProcessGroups();
        assertEquals(1, groups.size(), "the template holds one process group");
        return List.copyOf(groups.iterator().next().getContents().getProcessors());
    }

    /** The properties the template sets on the one processor of this type. */
    static Map<String, String> templateProperties(String type) throws Exception {
        List<ProcessorDTO> found = processors().stream().filter(p -> type.equals(p.getType())).toList();
        assertEquals(1, found.size(), "the template holds one " + type);
        return found.get(0).getConfig().getProperties();
    }

    /** A runner for the processor with the template's properties; names must be the real ones. */
    private static TestRunner configured(Class<? extends Processor> processor, String type) throws Exception {
        TestRunner runner = TestRunners.newTestRunner(processor);
        Set<String> known = new TreeSet<>();
        runner.getProcessor().getPropertyDescriptors().forEach(d -> known.add(d.getName()));
        for (Map.Entry<String, String> property : templateProperties(type).entrySet()) {
            assertTrue(known.contains(property.getKey()),
                    type + " 1.28.1 has no property '" + property.getKey() + "'; it has " + known);
            runner.setProperty(property.getKey(), property.getValue());
        }
        return runner;
    }

    private static TestRunner getHttp(String url) throws Exception {
        TestRunner runner = configured(GetHTTP.class, GET_HTTP);
        runner.setVariable("quotes.api.url", url);
        return runner;
    }

    private static TestRunner splitJson() throws Exception {
        return configured(SplitJson.class, SPLIT_JSON);
    }

    @Test
    void theProcessorsAreApacheNiFi1281() {
        for (Class<?> type : List.of(GetHTTP.class, SplitJson.class)) {
            String jar = type.getProtectionDomain().getCodeSource().getLocation().getPath();
            assertTrue(jar.endsWith("/nifi-standard-processors-1.28.1.jar"), type + " from " + jar);
        }
    }

    @Test
    void theTemplateReadsIntoNiFi1281TemplateClasses() throws Exception {
        TemplateDTO template = template();
        assertEquals("Quotes to Kafka", template.getName());
        assertEquals("1.3", template.getEncodingVersion());
        Map<String, String> bundles = new TreeMap<>();
        for (ProcessorDTO processor : processors()) {
            BundleDTO bundle = processor.getBundle();
            bundles.put(processor.getType(), bundle.getGroup() + ":" + bundle.getArtifact() + ":" + bundle.getVersion());
        }
        assertEquals(Map.of(
                GET_HTTP, "org.apache.nifi:nifi-standard-nar:1.28.1",
                SPLIT_JSON, "org.apache.nifi:nifi-standard-nar:1.28.1",
                "org.apache.nifi.processors.standard.LogAttribute", "org.apache.nifi:nifi-standard-nar:1.28.1",
                "org.apache.nifi.processors.kafka.pubsub.PublishKafka_2_6", "org.apache.nifi:nifi-kafka-2-6-nar:1.28.1"),
                bundles);
    }

    @Test
    void getHttpIsValidWithTheTemplateProperties() throws Exception {
        getHttp(quotesApiBase + "/quotes?count=10").assertValid();
    }

    @Test
    void splitJsonIsValidWithTheTemplateProperties() throws Exception {
        TestRunner runner = splitJson();
        runner.assertValid();
        assertEquals("the string 'null'", templateProperties(SPLIT_JSON).get("Null Value Representation"));
    }

    @Test
    void getHttpFetchesTheApiAndSplitJsonMakesOneFlowFilePerQuote() throws Exception {
        TestRunner fetch = getHttp(quotesApiBase + "/quotes?count=5");
        fetch.run();
        fetch.assertAllFlowFilesTransferred(GetHTTP.REL_SUCCESS, 1);
        MockFlowFile batch = fetch.getFlowFilesForRelationship(GetHTTP.REL_SUCCESS).get(0);
        assertTrue(batch.getAttribute("filename").matches("quotes-\\d+\\.json"), batch.getAttribute("filename"));
        JsonNode array = JSON.readTree(batch.toByteArray());
        assertTrue(array.isArray());
        assertEquals(5, array.size());

        TestRunner split = splitJson();
        split.enqueue(batch.toByteArray(), batch.getAttributes());
        split.run();
        split.assertTransferCount(SplitJson.REL_SPLIT, 5);
        split.assertTransferCount(SplitJson.REL_ORIGINAL, 1);
        split.assertTransferCount(SplitJson.REL_FAILURE, 0);
        List<MockFlowFile> quotes = split.getFlowFilesForRelationship(SplitJson.REL_SPLIT);
        for (int i = 0; i < quotes.size(); i++) {
            JsonNode quote = JSON.readTree(quotes.get(i).toByteArray());
            Set<String> fields = new TreeSet<>();
            quote.fieldNames().forEachRemaining(fields::add);
            assertEquals(new TreeSet<>(QUOTE_FIELDS), fields);
            assertEquals(array.get(i), quote, "split " + i + " is array element " + i);
            assertEquals(String.valueOf(i), quotes.get(i).getAttribute("fragment.index"));
        }
    }

    @Test
    void getHttpPollsAgainAndIsNotSuppressedByCachingHeaders() throws Exception {
        // GetHTTP keeps ETag/Last-Modified in its state and skips unchanged answers (304);
        // every poll of the quotes API must still produce a new batch.
        TestRunner fetch = getHttp(quotesApiBase + "/quotes?count=3");
        fetch.run(2);
        fetch.assertAllFlowFilesTransferred(GetHTTP.REL_SUCCESS, 2);
    }

    @Test
    void getHttpSendsNothingDownstreamWhenTheApiRefuses() throws Exception {
        // GetHTTP has no failure relationship: an error status (here 400) is logged as an error
        // (a bulletin in NiFi) and no FlowFile is created.
        TestRunner fetch = getHttp(quotesApiBase + "/quotes?count=0");
        fetch.run();
        fetch.assertTransferCount(GetHTTP.REL_SUCCESS, 0);
        assertTrue(fetch.getLogger().getErrorMessages().stream()
                .anyMatch(m -> m.getMsg().contains("received status code 400")),
                "an error is logged: " + fetch.getLogger().getErrorMessages());
    }

    @Test
    void splitJsonRoutesWhatItCannotSplitToFailure() throws Exception {
        for (String content : List.of("not json at all", "{\"quote\": \"unterminated", "")) {
            TestRunner split = splitJson();
            split.enqueue(content.getBytes(StandardCharsets.UTF_8));
            split.run();
            assertEquals(1, split.getFlowFilesForRelationship(SplitJson.REL_FAILURE).size(), "failure for: " + content);
            split.assertTransferCount(SplitJson.REL_SPLIT, 0);
            split.assertTransferCount(SplitJson.REL_ORIGINAL, 0);
        }
    }

    @Test
    void splitJsonSplitsAScalarOrAnEmptyArrayIntoNothing() throws Exception {
        // Not a failure: $.* over 42, [] or {} is an empty list, so only 'original' (which the
        // template auto-terminates) gets the FlowFile and no quote is published.
        for (String content : List.of("42", "[]", "{}")) {
            TestRunner split = splitJson();
            split.enqueue(content.getBytes(StandardCharsets.UTF_8));
            split.run();
            split.assertTransferCount(SplitJson.REL_SPLIT, 0);
            split.assertTransferCount(SplitJson.REL_FAILURE, 0);
            split.assertTransferCount(SplitJson.REL_ORIGINAL, 1);
        }
    }

    @Test
    void splitJsonWritesNullAsTheStringNullAndScalarsWithToString() throws Exception {
        TestRunner split = splitJson();
        split.enqueue("[{\"quote\": \"q\"}, null, \"a string\", 17, true, [1, 2]]".getBytes(StandardCharsets.UTF_8));
        split.run();
        split.assertTransferCount(SplitJson.REL_SPLIT, 6);
        List<String> contents = split.getFlowFilesForRelationship(SplitJson.REL_SPLIT).stream()
                .map(f -> new String(f.toByteArray(), StandardCharsets.UTF_8)).toList();
        assertEquals("{\"quote\":\"q\"}", contents.get(0));
        // The template's Null Value Representation: a null item is the JSON text null, not 0 bytes.
        assertEquals("null", contents.get(1));
        // Strings lose their quotes (Objects.toString), so they are not JSON any more; the
        // consumer dead-letters them as invalid. Numbers and booleans stay valid JSON.
        assertEquals("a string", contents.get(2));
        assertEquals("17", contents.get(3));
        assertEquals("true", contents.get(4));
        assertEquals("[1,2]", contents.get(5));
        assertFalse(contents.stream().anyMatch(String::isEmpty), "no 0-byte record");
    }
}
