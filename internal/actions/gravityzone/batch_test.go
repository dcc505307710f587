package gravityzone

import (
	"errors"
	"reflect"
	"testing"

	"github.com/riposte-soar/riposte/internal/actions"
)

// addToBlocklist answers for the whole call: every step shares the verdict and counts its own
// hashes.
func TestShareAdded(t *testing.T) {
	t.Parallel()
	specs := map[string]actions.Spec{}
	for _, s := range Vendor().Specs {
		specs[s.Name] = s
	}
	b := specs["gravityzone.add_to_blocklist"].Batch
	if b == nil || b.Input != "hashList" {
		t.Fatalf("add_to_blocklist declares batch %+v, want on hashList", b)
	}
	out, err := b.Share(actions.Output{"added": true, "count": 5}, nil, []string{"a", "b"})
	if err != nil || !reflect.DeepEqual(out, actions.Output{"added": true, "count": 2}) {
		t.Errorf("share of a success = %v, %v", out, err)
	}
	failed := errors.New("add hashes: JSON-RPC error -32000: busy")
	if out, err := b.Share(nil, failed, []string{"a"}); out != nil || err != failed {
		t.Errorf("share of a failure = %v, %v; want the call's error", out, err)
	}
	for name, s := range specs {
		if name != "gravityzone.add_to_blocklist" && s.Batch != nil {
			t.Errorf("%s declares a batch: one call of it serves one target", name)
		}
	}
}
