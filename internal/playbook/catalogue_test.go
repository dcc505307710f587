package playbook

import (
	"context"
	"fmt"
	"testing"

	"github.com/riposte-soar/riposte/internal/actions"
)

// fakeAction declares a spec like the real vendor actions and does nothing: the loader only
// reads specs.
type fakeAction struct{ spec actions.Spec }

func (f fakeAction) Spec() actions.Spec { return f.spec }

func (f fakeAction) Run(context.Context, actions.Inputs) (actions.Output, error) {
	return actions.Output{}, nil
}

func testCatalogue(tb testing.TB) *actions.Registry {
	tb.Helper()
	reg, err := actions.NewRegistry(
		fakeAction{actions.Spec{Name: "checkpoint.get_event", Vendor: "checkpoint", Idempotent: true,
			Inputs: []actions.Input{{Name: "eventId", Type: actions.String, Required: true}}}},
		fakeAction{actions.Spec{Name: "checkpoint.quarantine_entity", Vendor: "checkpoint",
			Inputs: []actions.Input{
				{Name: "entityIds", Type: actions.StringList, Required: true},
				{Name: "entityActionParam", Type: actions.String},
			}}},
		fakeAction{actions.Spec{Name: "gravityzone.change_incident_status", Vendor: "gravityzone", Idempotent: true,
			Inputs: []actions.Input{
				{Name: "incidentId", Type: actions.String, Required: true},
				{Name: "status", Type: actions.Int, Required: true, Choices: []actions.Choice{
					{Name: "open", Value: 1}, {Name: "investigating", Value: 2}, {Name: "closed", Value: 3}, {Name: "false_positive", Value: 4}}},
				{Name: "incidentType", Type: actions.Int},
			}}},
		fakeAction{actions.Spec{Name: "gravityzone.add_to_blocklist", Vendor: "gravityzone",
			Inputs: []actions.Input{
				{Name: "hashType", Type: actions.Int, Required: true, Choices: []actions.Choice{{Name: "sha256", Value: 1}, {Name: "md5", Value: 2}}},
				{Name: "hashList", Type: actions.StringList, Required: true},
			},
			Validate: func(in actions.Inputs) error {
				want := map[int64]int{1: 64, 2: 32}
				n, _ := in.Int("hashType")
				for i, h := range in.StringList("hashList") {
					if len(h) != want[n] {
						return fmt.Errorf("hashList item %d is not a hash of hashType %d", i, n)
					}
				}
				return nil
			}}},
		fakeAction{actions.Spec{Name: "nats.publish", Vendor: "nats",
			Inputs: []actions.Input{
				{Name: "subject", Type: actions.String, Required: true},
				{Name: "data", Type: actions.Any},
				{Name: "headers", Type: actions.Object},
			}}},
	)
	if err != nil {
		tb.Fatal(err)
	}
	return reg
}
