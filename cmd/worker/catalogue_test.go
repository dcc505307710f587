package main

import (
	"bytes"
	"flag"
	"os"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

// docs/actions.md is generated; this keeps it from drifting from the declarations.
func TestActionsDocIsCurrent(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	writeCatalogue(&buf)
	const path = "../../docs/actions.md"
	if *update {
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run: go test ./cmd/worker -run TestActionsDocIsCurrent -update)", err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("docs/actions.md is out of date: run make docs")
	}
}
