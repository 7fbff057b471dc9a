// PartitionVectors: prints the partition Apache Kafka's Java producer
// chooses for a keyed record, computed by kafka-clients' own code, for the
// keys and partition counts below: the vectors tests/data/murmur2-vectors.tsv
// holds and tests/integration/test_partitioner.c checks the relay against.
// Run from the repository root (Java 17 runs a single-file source):
//   java -cp "$HOME/.cache/outbox-relay/kafka-<version>/*" \
//     tests/kafka/PartitionVectors.java > tests/data/murmur2-vectors.tsv
// with <version> the one tests/kafka/pom.xml names (scripts/kafka-fetch.sh
// fetches the jars there; the ctest apache_kafka_partition_vectors reruns
// this and compares, so a new Kafka version means running it again).
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import org.apache.kafka.clients.producer.internals.BuiltInPartitioner;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.common.utils.Utils;

public class PartitionVectors {
    static final int[] PARTITIONS = {1, 3, 6, 64, 100};

    record Key(String note, String key) {}

    static String repeat(String s, int length) {
        StringBuilder b = new StringBuilder();
        while (b.length() < length)
            b.append(s);
        return b.substring(0, length);
    }

    static List<Key> keys() {
        List<Key> k = new ArrayList<>();
        k.add(new Key("empty key (hashed by Java; librdkafka's consistent_random spreads it)", ""));
        // Every tail length of murmur2's 4-byte blocks (0 to 3 bytes left).
        String abc = "abcdefghij";
        for (int n = 1; n <= 9; n++)
            k.add(new Key("ascii, " + n + (n == 1 ? " byte" : " bytes"), abc.substring(0, n)));
        k.add(new Key("ascii", "order-42"));
        k.add(new Key("ascii", "customer:1234"));
        k.add(new Key("ascii digits", "0"));
        k.add(new Key("ascii digits", "1234567890"));
        k.add(new Key("ascii with space", "hello world"));
        k.add(new Key("ascii", "The quick brown fox jumps over the lazy dog"));
        k.add(new Key("uuid", "5f0c8a3e-9b1d-4c2e-8f7a-6d5e4c3b2a19"));
        // How Kafka Connect's JsonConverter (schemas off) writes the key
        // order-42: docs/delivery.md tells users to store that text.
        k.add(new Key("json string, quotes included", "\"order-42\""));
        // Bytes >= 0x80 are negative in Java: a port of murmur2 that
        // forgets the sign (or adds it) differs here first.
        k.add(new Key("utf-8, 2 bytes", "\u00fc"));
        k.add(new Key("utf-8, U+0080", "\u0080"));
        k.add(new Key("utf-8, latin", "M\u00fcller-\u00e9t\u00e9"));
        k.add(new Key("utf-8, greek", "\u03a9mega-\u0394"));
        k.add(new Key("utf-8, cjk", "\u65e5\u672c\u8a9e\u306e\u30ad\u30fc"));
        k.add(new Key("utf-8, 4-byte emoji", "party-\ud83c\udf89"));
        k.add(new Key("utf-8, U+FFFF", "\uffff"));
        k.add(new Key("utf-8, 3 high bytes then ascii", "\u20ac1"));
        // What PostgreSQL text can hold of binary-looking keys: control
        // characters and DEL (no NUL), hex and base64 spellings.
        k.add(new Key("control characters", "\u0001\u0002\u0003"));
        k.add(new Key("tab, newline, carriage return", "\t\n\r"));
        k.add(new Key("DEL", "\u007f"));
        k.add(new Key("all of 0x01..0x7f", allAscii()));
        k.add(new Key("hex spelling", "0xdeadbeef"));
        k.add(new Key("base64 spelling", "AAECAwQFBgcICQ=="));
        k.add(new Key("long ascii, 255 bytes", repeat("key-", 255)));
        k.add(new Key("long ascii, 1000 bytes", repeat("0123456789", 1000)));
        k.add(new Key("long utf-8, 1501 bytes", repeat("\u00e4\u00f6\u00fc", 750) + "!"));
        return k;
    }

    static String allAscii() {
        StringBuilder b = new StringBuilder();
        for (char c = 1; c < 128; c++)
            b.append(c);
        return b.toString();
    }

    static String hex(byte[] b) {
        StringBuilder s = new StringBuilder();
        for (byte x : b)
            s.append(String.format("%02x", x & 0xff));
        return s.toString();
    }

    // The version kafka-clients was built as (what its AppInfoParser reads,
    // without the logging that class needs).
    static String clientsVersion() throws java.io.IOException {
        Properties p = new Properties();
        try (InputStream in = BuiltInPartitioner.class.getResourceAsStream("/kafka/kafka-version.properties")) {
            p.load(in);
        }
        return p.getProperty("version");
    }

    public static void main(String[] args) throws java.io.IOException {
        // How a Java service turns a String key into bytes.
        StringSerializer ser = new StringSerializer();
        String version = clientsVersion();
        System.out.println("# Key-to-partition vectors of Apache Kafka's Java producer for keyed records,");
        System.out.println("# computed by kafka-clients " + version
                           + " (BuiltInPartitioner.partitionForKey: Utils.toPositive(Utils.murmur2(key)) % partitions),");
        System.out.println("# the key serialized by its StringSerializer (UTF-8). Produced by, from the repository root:");
        System.out.println("#   java -cp \"$HOME/.cache/outbox-relay/kafka-" + version + "/*\" \\");
        System.out.println("#     tests/kafka/PartitionVectors.java > tests/data/murmur2-vectors.tsv");
        System.out.println("# Columns: key_hex (its bytes), partitions, partition, murmur2 (signed 32-bit), note.");
        for (Key k : keys()) {
            byte[] bytes = ser.serialize("topic", k.key());
            if (!java.util.Arrays.equals(bytes, k.key().getBytes(StandardCharsets.UTF_8)))
                throw new IllegalStateException("StringSerializer is not UTF-8 here");
            int hash = Utils.murmur2(bytes);
            for (int n : PARTITIONS) {
                int p = BuiltInPartitioner.partitionForKey(bytes, n);
                // The documented formula, so that the header stays true.
                if (p != Utils.toPositive(hash) % n)
                    throw new IllegalStateException("partitionForKey differs from murmur2");
                System.out.println(hex(bytes) + "\t" + n + "\t" + p + "\t" + hash + "\t" + k.note());
            }
        }
    }
}
