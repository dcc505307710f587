package playbook_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"

	"github.com/riposte-soar/riposte/internal/actions"
	"github.com/riposte-soar/riposte/internal/actions/checkpoint"
	"github.com/riposte-soar/riposte/internal/actions/cyberark"
	"github.com/riposte-soar/riposte/internal/actions/gravityzone"
	"github.com/riposte-soar/riposte/internal/actions/natspub"
	"github.com/riposte-soar/riposte/internal/playbook"
)

var update = flag.Bool("update", false, "rewrite docs/playbook.schema.json")

const schemaPath = "../../docs/playbook.schema.json"

// realCatalogue is the worker's catalogue: the vendors cmd/worker lists (vendorList), which this
// package cannot import.
func realCatalogue(tb testing.TB) *actions.Catalogue {
	tb.Helper()
	var specs []actions.Spec
	for _, v := range []actions.Vendor{checkpoint.Vendor(), gravityzone.Vendor(), cyberark.Vendor(), natspub.Vendor()} {
		specs = append(specs, v.Specs...)
	}
	cat, err := actions.NewCatalogue(specs...)
	if err != nil {
		tb.Fatal(err)
	}
	return cat
}

// docs/playbook.schema.json is generated; this keeps it from drifting from the loader's tables
// and the action declarations.
func TestSchemaIsCurrent(t *testing.T) {
	t.Parallel()
	got, err := playbook.Schema(realCatalogue(t))
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(schemaPath, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(schemaPath)
	if err != nil {
		t.Fatalf("%v (run: go test ./internal/playbook -run TestSchemaIsCurrent -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("docs/playbook.schema.json is out of date: run go test ./internal/playbook -run TestSchemaIsCurrent -update")
	}
}

func compileSchema(tb testing.TB) *jsonschema.Schema {
	tb.Helper()
	raw, err := playbook.Schema(realCatalogue(tb))
	if err != nil {
		tb.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		tb.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("playbook.schema.json", doc); err != nil {
		tb.Fatal(err)
	}
	s, err := c.Compile("playbook.schema.json")
	if err != nil {
		tb.Fatalf("the schema does not compile: %v", err)
	}
	return s
}

// validate checks one YAML document against the schema, as an editor's YAML plugin would.
func validate(tb testing.TB, s *jsonschema.Schema, src []byte) error {
	tb.Helper()
	var v any
	if err := yaml.Unmarshal(src, &v); err != nil {
		tb.Fatal(err)
	}
	j, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
	if err != nil {
		tb.Fatal(err)
	}
	return s.Validate(inst)
}

// Every shipped playbook and every example loads with the real catalogue and validates against
// the schema.
func TestPlaybooksValidateAgainstSchema(t *testing.T) {
	t.Parallel()
	s := compileSchema(t)
	cat := realCatalogue(t)
	for _, dir := range []string{"../../playbooks", "testdata/examples"} {
		if _, err := playbook.LoadDir(dir, cat); err != nil {
			t.Fatalf("load %s:\n%v", dir, err)
		}
		files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
		if len(files) == 0 {
			t.Fatalf("no playbooks in %s", dir)
		}
		for _, f := range files {
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if err := validate(t, s, src); err != nil {
				t.Errorf("%s does not validate:\n%v", f, err)
			}
		}
	}
}

// The schema says no where the loader says no, for what a schema can say.
func TestSchemaRejects(t *testing.T) {
	t.Parallel()
	s := compileSchema(t)
	cat := realCatalogue(t)
	const base = `name: s
on: soar.alerts.>
steps:
  - id: isolate
    action: gravityzone.isolate_endpoint
    with: {endpointId: "${{ alert.endpointId }}"}
`
	tests := []struct {
		name, from, to string
	}{
		{"unknown top-level key", "steps:", "stpes:"},
		{"bad name", "name: s", "name: a b"},
		{"reserved name", "name: s", "name: unmatched"},
		{"bad subject filter", "on: soar.alerts.>", "on: soar.>.alerts"},
		{"bad mode", "name: s", "name: s\nmode: dry-run"},
		{"when with ${{ }}", "name: s", "name: s\nwhen: ${{ alert.x }}"},
		{"unknown step key", "    action:", "    acton:"},
		{"unknown action", "gravityzone.isolate_endpoint", "gravityzone.isolate"},
		{"unknown input", "{endpointId:", "{endpointID:"},
		{"missing required input", `{endpointId: "${{ alert.endpointId }}"}`, "{}"},
		{"no with for required inputs", `    with: {endpointId: "${{ alert.endpointId }}"}`, ""},
		{"input of the wrong type", `"${{ alert.endpointId }}"`, "5"},
		{"input outside its choices", `    action: gravityzone.isolate_endpoint
    with: {endpointId: "${{ alert.endpointId }}"}`, `    action: gravityzone.change_incident_status
    with: {type: incidents, incidentId: i, status: shut}`},
		{"input outside its enum", `    action: gravityzone.isolate_endpoint
    with: {endpointId: "${{ alert.endpointId }}"}`, `    action: gravityzone.change_incident_status
    with: {type: incident, incidentId: i, status: closed}`},
		{"bad duration", "    with:", "    timeout: soon\n    with:"},
		{"bad on_error", "    with:", "    on_error: ignore\n    with:"},
		{"bad retry key", "    with:", "    retry: {max_attempt: 3}\n    with:"},
		{"bad defaults key", "steps:", "defaults: {if: x}\nsteps:"},
		{"bad as", "    with:", "    foreach: [a]\n    as: 2x\n    with:"},
		{"foreach that is text", "    with:", "    foreach: hosts\n    with:"},
		{"batch on an action that cannot batch", "    with:", "    batch: {max_size: 10}\n    with:"},
		{"bad batch size", "gravityzone.isolate_endpoint\n    with: {endpointId: \"${{ alert.endpointId }}\"}",
			"checkpoint.quarantine_entity\n    with: {entityIds: [e1]}\n    batch: {max_size: 1}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if !strings.Contains(base, tt.from) {
				t.Fatalf("the base playbook has no %q", tt.from)
			}
			src := strings.Replace(base, tt.from, tt.to, 1)
			if err := validate(t, s, []byte(src)); err == nil {
				t.Errorf("the schema accepts:\n%s", src)
			}
			path := filepath.Join(t.TempDir(), "p.yaml")
			if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := playbook.LoadFiles([]string{path}, cat); err == nil {
				t.Errorf("the loader accepts what the schema rejects:\n%s", src)
			}
		})
	}
	if err := validate(t, s, []byte(base)); err != nil {
		t.Errorf("the base playbook does not validate: %v", err)
	}
}
