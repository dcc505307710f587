package playbook_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/riposte-soar/riposte/internal/actions"
	"github.com/riposte-soar/riposte/internal/playbook"
)

func TestBatchKey(t *testing.T) {
	t.Parallel()
	b := loadExample(t, "batch.yaml")
	if got, want := b.Steps[0].Batch, (&actions.BatchPolicy{MaxSize: 32, MaxWait: 200 * time.Millisecond}); *got != *want {
		t.Errorf("batch = %+v, want %+v", got, want)
	}
	const src = `name: b
on: soar.alerts.>
steps:
  - id: block
    action: gravityzone.add_to_blocklist
    with: {hashType: md5, hashList: "${{ alert.md5 }}", sourceInfo: riposte}
    batch: {}
  - id: isolate
    action: gravityzone.isolate_endpoint
    with: {endpointId: "${{ alert.endpointId }}"}
`
	books, err := playbook.LoadFiles([]string{writeFile(t, src)}, realCatalogue(t))
	if err != nil {
		t.Fatal(err)
	}
	want := actions.BatchPolicy{MaxSize: playbook.DefaultBatchSize, MaxWait: playbook.DefaultBatchWait}
	if got := books[0].Steps[0].Batch; got == nil || *got != want {
		t.Errorf("batch: {} = %+v, want the defaults %+v", got, want)
	}
	if books[0].Steps[1].Batch != nil {
		t.Error("a step without batch: batches")
	}
}

// Every problem of a `batch:`, at its line.
func TestBatchProblems(t *testing.T) {
	t.Parallel()
	const head = "name: b\non: soar.alerts.>\nsteps:\n  - id: s\n"
	const quarantine = "    action: checkpoint.quarantine_entity\n    with: {entityIds: [e1]}\n"
	tests := []struct {
		name, step string
		want       []string
	}{
		{"an action that cannot batch", "    action: gravityzone.isolate_endpoint\n    with: {endpointId: ep}\n    batch: {max_size: 10}\n",
			[]string{`p.yaml:7: step "s": action gravityzone.isolate_endpoint cannot batch: one call of it serves one target; ` +
				`the actions that can are checkpoint.entity_action, checkpoint.quarantine_entity, checkpoint.restore_entity or gravityzone.add_to_blocklist`}},
		{"with foreach", "    foreach: [e1, e2]\n    action: checkpoint.quarantine_entity\n    with: {entityIds: \"${{ [item] }}\"}\n    batch: {}\n",
			[]string{`p.yaml:8: step "s": batch does not combine with foreach: give the action the whole list instead`}},
		{"with approval", quarantine + "    approval: {prompt: \"Quarantine?\"}\n    batch: {}\n",
			[]string{`p.yaml:8: step "s": batch does not combine with approval: each alert's approval is decided on its own`}},
		{"a size of one", quarantine + "    batch: {max_size: 1}\n",
			[]string{`p.yaml:7: step "s": batch.max_size must be a whole number from 2 to 1000, got "1"`}},
		{"a size too large", quarantine + "    batch:\n      max_size: 5000\n",
			[]string{`p.yaml:8: step "s": batch.max_size must be a whole number from 2 to 1000, got "5000"`}},
		{"no wait", quarantine + "    batch: {max_wait: 0s}\n",
			[]string{`p.yaml:7: step "s": batch.max_wait must be positive, got "0s"`}},
		{"a wait too long", quarantine + "    batch:\n      max_wait: 1m\n",
			[]string{`p.yaml:8: step "s": batch.max_wait must be at most 5s, got "1m": every alert of the batch waits that long`}},
		{"a typo", quarantine + "    batch: {max_sise: 10}\n",
			[]string{`p.yaml:7: step "s": batch: unknown key "max_sise"; did you mean "max_size"?`}},
		{"not a mapping", quarantine + "    batch: true\n",
			[]string{`p.yaml:7: step "s": batch must be a mapping of max_size or max_wait`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := playbook.LoadFiles([]string{writeFile(t, head+tt.step)}, realCatalogue(t))
			var probs playbook.Problems
			if !errors.As(err, &probs) {
				t.Fatalf("err = %v, want problems", err)
			}
			var got []string
			for _, p := range probs {
				got = append(got, filepath.Base(p.File)+strings.TrimPrefix(p.String(), p.File))
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func writeFile(t *testing.T, src string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "p.yaml")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
