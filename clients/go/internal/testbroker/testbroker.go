// Package testbroker starts a real Jobwire broker (the Python service, with its own
// embedded Valkey) for tests, and stops it.
package testbroker

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"time"
)

// ReadyTimeout bounds how long Start waits for the broker's ready file.
const ReadyTimeout = 60 * time.Second

// Broker is a running broker process.
type Broker struct {
	// Target is the broker's "127.0.0.1:<port>".
	Target string
	cmd    *exec.Cmd
	dir    string
	exited chan error
}

// ready is what the broker writes to its --ready-file once it serves (version 1).
type ready struct {
	Version  int `json:"version"`
	GRPCPort int `json:"grpc_port"`
}

// Python is the interpreter that runs the broker: $JOBWIRE_PYTHON, or the
// repository's .venv/bin/python.
func Python() string {
	if p := os.Getenv("JOBWIRE_PYTHON"); p != "" {
		return p
	}
	_, file, _, _ := runtime.Caller(0) // <repo>/clients/go/internal/testbroker/testbroker.go
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "..", ".venv", "bin", "python")
}

// Start runs `python -m jobwire_broker serve` on a free loopback port with a fresh
// data directory and waits until its ready file says which port it serves on. args
// are more flags for `serve`, such as "--max-payload-bytes", "6291456".
func Start(args ...string) (*Broker, error) {
	dir, err := os.MkdirTemp("", "jobwire-go-test-")
	if err != nil {
		return nil, err
	}
	readyFile := filepath.Join(dir, "ready.json")
	cmd := exec.Command(Python(), append([]string{"-m", "jobwire_broker", "serve",
		"--listen", "127.0.0.1:0", "--redis-url", "", "--data-dir", filepath.Join(dir, "data"),
		"--ready-file", readyFile, "--log-level", "WARNING"}, args...)...)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start broker with %s (set JOBWIRE_PYTHON, or run `make setup`): %w", Python(), err)
	}
	b := &Broker{cmd: cmd, dir: dir, exited: make(chan error, 1)}
	go func() { b.exited <- cmd.Wait() }()
	deadline := time.After(ReadyTimeout)
	for {
		// The broker renames the file into place whole: once it exists, it is complete.
		if data, err := os.ReadFile(readyFile); err == nil {
			var r ready
			if err := json.Unmarshal(data, &r); err != nil || r.Version != 1 || r.GRPCPort <= 0 {
				b.Stop()
				return nil, fmt.Errorf("unexpected ready file %q (%v)", data, err)
			}
			b.Target = fmt.Sprintf("127.0.0.1:%d", r.GRPCPort)
			return b, nil
		}
		select {
		case err := <-b.exited:
			os.RemoveAll(dir)
			return nil, fmt.Errorf("broker exited before it was ready (its output is above): %v", err)
		case <-deadline:
			b.Stop()
			return nil, errors.New("broker not ready in time (no ready file)")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Stop sends SIGTERM, waits for the broker to exit (killing it after 20 s) and
// removes its data directory.
func (b *Broker) Stop() error {
	defer os.RemoveAll(b.dir)
	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case err := <-b.exited:
		return err
	case <-time.After(20 * time.Second):
		b.cmd.Process.Kill()
		<-b.exited
		return errors.New("broker ignored SIGTERM; killed")
	}
}
