package main

import (
	"os"
	"strings"
	"testing"
)

// TestReadmeShowsThisProgram keeps the README's example in step with this file.
func TestReadmeShowsThisProgram(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	source, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	// The README shows the program from its package clause on.
	program := string(source[strings.Index(string(source), "package main"):])
	if !strings.Contains(string(readme), "```go\n"+program+"```\n") {
		t.Error("README.md's quickstart differs from examples/quickstart/main.go; copy the program over")
	}
}
