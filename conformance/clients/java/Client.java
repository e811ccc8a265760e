// Conformance client for Java: HttpURLConnection or java.net.http.HttpClient, configured only by JVM
// system properties as the user docs say (-DsocksProxyHost/-DsocksProxyPort, or -Dhttp.proxyHost ...).
//
// Usage: java Client --library urlconnection|httpclient (METHOD URL BODY)...
// Prints one JSON object per request on stdout.

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.PrintStream;
import java.net.HttpURLConnection;
import java.net.URI;
import java.net.URL;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

public final class Client {
    private static final Duration TIMEOUT = Duration.ofSeconds(10);
    private static final String USAGE =
            "usage: conformance-client [-Dname=value...] --library urlconnection|httpclient (METHOD URL BODY)...\n"
                    + "       BODY is the literal POST body, or '-' for none";

    private record Response(int status, String body) {}

    private interface Library {
        Response send(String method, String url, String body) throws Exception;
    }

    public static void main(String[] args) throws Exception {
        String library = null;
        int i = 0;
        while (i < args.length && args[i].startsWith("--")) {
            if (args[i].equals("--library") && i + 1 < args.length) {
                library = args[i + 1];
                i += 2;
            } else {
                usage("unknown option " + args[i]);
            }
        }
        List<String[]> requests = new ArrayList<>();
        int rest = args.length - i;
        if (rest == 0 || rest % 3 != 0) {
            usage(null);
        }
        for (; i < args.length; i += 3) {
            if (!args[i].equals("GET") && !args[i].equals("POST")) {
                usage("METHOD must be GET or POST, got " + args[i]);
            }
            requests.add(new String[] {args[i], args[i + 1], args[i + 2]});
        }

        Library client;
        if ("urlconnection".equals(library)) {
            client = Client::viaUrlConnection;
        } else if ("httpclient".equals(library)) {
            // No .proxy(): a client built without one still uses the default ProxySelector, which reads
            // -Dhttp.proxyHost/-Dhttps.proxyHost (but never the SOCKS properties). That is what users get.
            HttpClient http = HttpClient.newBuilder()
                    .connectTimeout(TIMEOUT)
                    .build();
            client = (method, url, body) -> viaHttpClient(http, method, url, body);
        } else {
            usage("--library urlconnection|httpclient is required");
            return;
        }

        PrintStream out = new PrintStream(System.out, true, StandardCharsets.UTF_8);
        for (String[] r : requests) {
            StringBuilder line = new StringBuilder("{\"method\":").append(json(r[0]))
                    .append(",\"url\":").append(json(r[1]));
            try {
                Response resp = client.send(r[0], r[1], r[2]);
                line.append(",\"status\":").append(resp.status())
                        .append(",\"body\":").append(json(resp.body()));
            } catch (Exception e) {
                line.append(",\"error\":").append(json(errorText(e)));
            }
            out.println(line.append('}'));
        }
        out.flush();
        System.exit(0);
    }

    private static Response viaUrlConnection(String method, String url, String body) throws IOException {
        HttpURLConnection conn = (HttpURLConnection) new URL(url).openConnection();
        conn.setConnectTimeout((int) TIMEOUT.toMillis());
        conn.setReadTimeout((int) TIMEOUT.toMillis());
        conn.setInstanceFollowRedirects(false);
        conn.setRequestMethod(method);
        try {
            if (!body.equals("-")) {
                byte[] bytes = body.getBytes(StandardCharsets.UTF_8);
                conn.setDoOutput(true);
                conn.setRequestProperty("Content-Type", "text/plain");
                conn.setFixedLengthStreamingMode(bytes.length);
                try (OutputStream os = conn.getOutputStream()) {
                    os.write(bytes);
                }
            }
            int status = conn.getResponseCode();
            // 4xx/5xx bodies are on the error stream; getInputStream() would throw.
            InputStream in = status >= 400 ? conn.getErrorStream() : conn.getInputStream();
            return new Response(status, in == null ? "" : readAll(in));
        } finally {
            conn.disconnect();
        }
    }

    private static Response viaHttpClient(HttpClient http, String method, String url, String body)
            throws IOException, InterruptedException {
        HttpRequest.Builder req = HttpRequest.newBuilder(URI.create(url)).timeout(TIMEOUT);
        if (body.equals("-")) {
            req.method(method, HttpRequest.BodyPublishers.noBody());
        } else {
            req.header("Content-Type", "text/plain")
                    .method(method, HttpRequest.BodyPublishers.ofString(body, StandardCharsets.UTF_8));
        }
        HttpResponse<byte[]> resp = http.send(req.build(), HttpResponse.BodyHandlers.ofByteArray());
        return new Response(resp.statusCode(), new String(resp.body(), StandardCharsets.UTF_8));
    }

    private static String readAll(InputStream in) throws IOException {
        try (in) {
            ByteArrayOutputStream buf = new ByteArrayOutputStream();
            in.transferTo(buf);
            return buf.toString(StandardCharsets.UTF_8);
        }
    }

    /** The exception's simple class name and message, on one line; the cause is added when the message is empty. */
    private static String errorText(Throwable e) {
        String text = e.getClass().getSimpleName();
        String msg = e.getMessage();
        if (msg != null && !msg.isBlank()) {
            text += ": " + msg;
        } else if (e.getCause() != null && e.getCause() != e) {
            text += ": " + errorText(e.getCause());
        }
        return text.replaceAll("\\s+", " ").trim();
    }

    private static String json(String s) {
        StringBuilder b = new StringBuilder(s.length() + 2).append('"');
        for (int k = 0; k < s.length(); k++) {
            char c = s.charAt(k);
            switch (c) {
                case '"' -> b.append("\\\"");
                case '\\' -> b.append("\\\\");
                case '\n' -> b.append("\\n");
                case '\r' -> b.append("\\r");
                case '\t' -> b.append("\\t");
                default -> {
                    if (c < 0x20) {
                        b.append(String.format("\\u%04x", (int) c));
                    } else {
                        b.append(c);
                    }
                }
            }
        }
        return b.append('"').toString();
    }

    private static void usage(String problem) {
        if (problem != null) {
            System.err.println("conformance-client: " + problem);
        }
        System.err.println(USAGE);
        System.exit(2);
    }
}
