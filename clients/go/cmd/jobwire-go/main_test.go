package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jobwire/jobwire/clients/go/internal/testbroker"
	"github.com/jobwire/jobwire/clients/go/jobwire"
)

var target string

func TestMain(m *testing.M) {
	broker, err := testbroker.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "jobwire-go tests:", err)
		os.Exit(1)
	}
	target = broker.Target
	code := m.Run()
	broker.Stop()
	os.Exit(code)
}

func runCmd(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), args, strings.NewReader(stdin), &stdout, &stderr); code != 0 {
		t.Fatalf("jobwire-go %v: exit %d: %s", args, code, stderr.String())
	}
	return stdout.String()
}

func TestEnqueueThenWork(t *testing.T) {
	const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	queue := "go-cmd-" + t.Name()
	file := filepath.Join(t.TempDir(), "payload")
	if err := os.WriteFile(file, []byte("abc"), 0o644); err != nil {
		t.Fatal(err)
	}
	first := strings.TrimSpace(runCmd(t, "", "enqueue", "--target", target, "--queue", queue,
		"--payload-file", file, "--header", "k=v", "--header", "x=y=z", "--traceparent", traceparent))
	second := strings.TrimSpace(runCmd(t, "from stdin", "enqueue", "--target", target, "--queue", queue, "--payload-file", "-"))

	out := runCmd(t, "", "work", "--target", target, "--queue", queue, "--count", "2", "--result-from-payload")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("want 2 lines, got %q", out)
	}
	var got [2]processed
	for i, line := range lines {
		if err := json.Unmarshal([]byte(line), &got[i]); err != nil {
			t.Fatal(err)
		}
	}
	if got[0].ID != first || got[0].Payload != base64.StdEncoding.EncodeToString([]byte("abc")) || got[0].Headers["k"] != "v" || got[0].Headers["x"] != "y=z" {
		t.Errorf("first job = %+v", got[0])
	}
	if got[0].Traceparent != traceparent || got[0].TraceID != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("first job's trace = %q, %q", got[0].Traceparent, got[0].TraceID)
	}
	if got[1].ID != second || got[1].Payload != base64.StdEncoding.EncodeToString([]byte("from stdin")) || got[1].Traceparent != "" {
		t.Errorf("second job = %+v", got[1])
	}

	client, err := jobwire.Dial(target)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	for id, want := range map[string]string{first: "cba", second: "nidts morf"} {
		job, err := client.GetJob(context.Background(), id)
		if err != nil || job.GetState() != jobwire.StateCompleted || string(job.GetResult()) != want {
			t.Errorf("job %s = %v, %v; want completed with %q", id, job, err, want)
		}
	}
}

// TestWorkEmptyJob: a job without payload or headers prints "payload":"" and
// "headers":{} (not null), like the TypeScript and Python CLIs.
func TestWorkEmptyJob(t *testing.T) {
	queue := "go-cmd-" + t.Name()
	id := strings.TrimSpace(runCmd(t, "", "enqueue", "--target", target, "--queue", queue))
	out := strings.TrimSpace(runCmd(t, "", "work", "--target", target, "--queue", queue, "--count", "1"))
	var line map[string]any
	if err := json.Unmarshal([]byte(out), &line); err != nil {
		t.Fatalf("%v: %q", err, out)
	}
	if line["id"] != id || line["attempt"] != 1.0 {
		t.Errorf("line = %s", out)
	}
	for key, want := range map[string]any{"payload": "", "content_type": "", "traceparent": "", "tracestate": "", "baggage": ""} {
		if line[key] != want {
			t.Errorf("%s = %#v, want %#v in %s", key, line[key], want, out)
		}
	}
	if headers, ok := line["headers"].(map[string]any); !ok || len(headers) != 0 {
		t.Errorf("headers = %#v, want {} in %s", line["headers"], out)
	}
	if !strings.Contains(out, `"payload":""`) || !strings.Contains(out, `"headers":{}`) || strings.Contains(out, "null") {
		t.Errorf("line = %s", out)
	}
}

func TestBadInput(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"enqueue", "--target", target, "--queue", "q", "--traceparent", "nope"},
		strings.NewReader(""), &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "traceparent") {
		t.Errorf("bad traceparent: exit %d, %q", code, stderr.String())
	}
	if code := run(context.Background(), []string{"frobnicate"}, strings.NewReader(""), &stdout, &stderr); code != 2 {
		t.Errorf("unknown command: exit %d", code)
	}
}
