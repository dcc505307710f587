package actions_test

import (
	"strings"
	"testing"

	"github.com/riposte-soar/riposte/internal/actions"
)

// A batch declaration must name a list-of-strings input and say how a call is shared.
func TestCatalogueChecksBatch(t *testing.T) {
	t.Parallel()
	share := func(out actions.Output, err error, _ []string) (actions.Output, error) { return out, err }
	inputs := []actions.Input{{Name: "ids", Type: actions.StringList, Required: true}, {Name: "why", Type: actions.String}}
	tests := []struct {
		name  string
		batch *actions.Batch
		want  string
	}{
		{"a list input", &actions.Batch{Input: "ids", Share: share}, ""},
		{"no such input", &actions.Batch{Input: "idz", Share: share}, `register action "t.a": batch input "idz" is not one of its list-of-strings inputs`},
		{"not a list", &actions.Batch{Input: "why", Share: share}, `batch input "why" is not one of its list-of-strings inputs`},
		{"no share", &actions.Batch{Input: "ids"}, `register action "t.a": batch has no Share`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := actions.NewCatalogue(actions.Spec{Name: "t.a", Vendor: "t", Inputs: inputs, Batch: tt.batch})
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("rejected: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
}
