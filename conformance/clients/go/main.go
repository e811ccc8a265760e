// Command conformance-client sends HTTP requests with Go's standard library,
// configured the way the user docs tell Go users: nothing in code, the
// default transport's http.ProxyFromEnvironment reads HTTP_PROXY/HTTPS_PROXY.
//
// Usage: conformance-client (METHOD URL BODY)...
// Prints one JSON object per request on stdout.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

type result struct {
	Method string  `json:"method"`
	URL    string  `json:"url"`
	Status *int    `json:"status,omitempty"`
	Body   *string `json:"body,omitempty"`
	Error  *string `json:"error,omitempty"`
}

func main() {
	args := os.Args[1:]
	if len(args) == 0 || len(args)%3 != 0 {
		fmt.Fprintln(os.Stderr, "usage: conformance-client (METHOD URL BODY)...  (BODY is '-' for none)")
		os.Exit(2)
	}
	for i := 0; i < len(args); i += 3 {
		if args[i] != "GET" && args[i] != "POST" {
			fmt.Fprintf(os.Stderr, "conformance-client: METHOD must be GET or POST, got %q\n", args[i])
			os.Exit(2)
		}
	}

	// The default transport is what users get; it consults ProxyFromEnvironment.
	client := &http.Client{Timeout: 10 * time.Second}
	out := json.NewEncoder(os.Stdout)
	out.SetEscapeHTML(false)

	for i := 0; i < len(args); i += 3 {
		method, url, body := args[i], args[i+1], args[i+2]
		res := do(client, method, url, body)
		if err := out.Encode(res); err != nil {
			fmt.Fprintln(os.Stderr, "conformance-client:", err)
			os.Exit(1)
		}
	}
}

func do(client *http.Client, method, url, body string) result {
	res := result{Method: method, URL: url}
	fail := func(err error) result {
		msg := strings.ReplaceAll(err.Error(), "\n", " ")
		res.Error = &msg
		return res
	}

	var reqBody io.Reader
	if body != "-" {
		reqBody = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, reqBody)
	if err != nil {
		return fail(err)
	}
	if reqBody != nil {
		req.Header.Set("Content-Type", "text/plain")
	}
	resp, err := client.Do(req)
	if err != nil {
		return fail(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fail(err)
	}
	status := resp.StatusCode
	text := strings.ToValidUTF8(string(data), "\uFFFD")
	res.Status = &status
	res.Body = &text
	return res
}
