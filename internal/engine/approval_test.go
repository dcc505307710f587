package engine_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/riposte-soar/riposte/internal/actions"
	"github.com/riposte-soar/riposte/internal/engine"
	"github.com/riposte-soar/riposte/internal/playbook"
)

// gateKeeper is an in-memory engine.Approvals: gates wait until decide is called.
type gateKeeper struct {
	mu      sync.Mutex
	asked   map[string]engine.Gate
	decided map[string]*engine.ApprovalInfo
	err     error
}

func newGateKeeper() *gateKeeper {
	return &gateKeeper{asked: map[string]engine.Gate{}, decided: map[string]*engine.ApprovalInfo{}}
}

func (k *gateKeeper) Gate(_ context.Context, g engine.Gate) (*engine.ApprovalInfo, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.err != nil {
		return nil, k.err
	}
	if _, ok := k.asked[g.ID]; !ok {
		k.asked[g.ID] = g
	}
	return k.decided[g.ID], nil
}

// decideAll decides every gate asked so far whose prompt contains match.
func (k *gateKeeper) decideAll(match, decision string, by ...string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for id, g := range k.asked {
		if strings.Contains(g.Prompt, match) && k.decided[id] == nil {
			k.decided[id] = &engine.ApprovalInfo{Decision: decision, By: by, DecidedAt: time.Unix(0, 0), Reason: "test"}
		}
	}
}

func (k *gateKeeper) prompts() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []string
	for _, g := range k.asked {
		out = append(out, g.Prompt)
	}
	return out
}

const gatedPlaybook = `name: gated
on: [soar.alerts.>]
mode: MODE
steps:
  - id: look
    action: test.lookup
    with: {key: "${{ alert.key }}"}
  - id: block
    foreach: ${{ alert.targets }}
    action: test.block
    with: {targets: "${{ [item] }}"}
    approval: {prompt: "Block ${{ item }} (${{ steps.look.output.state }})?"}
    on_error: continue
`

func gatedEngine(t *testing.T, mode string, keeper engine.Approvals) (*engine.Engine, *fakeAction, *fakeAction) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "gated.yaml"), []byte(strings.Replace(gatedPlaybook, "MODE", mode, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	log := &callLog{}
	lookup := &fakeAction{spec: actions.Spec{Name: "test.lookup", Vendor: "test",
		Inputs: []actions.Input{{Name: "key", Type: actions.String, Required: true}}}, log: log}
	lookup.script(func(context.Context, int, actions.Inputs) (actions.Output, error) {
		return actions.Output{"state": "open"}, nil
	})
	block := &fakeAction{spec: actions.Spec{Name: "test.block", Vendor: "test",
		Inputs: []actions.Input{{Name: "targets", Type: actions.StringList, Required: true}}}, log: log}
	reg, err := actions.NewRegistry(lookup, block)
	if err != nil {
		t.Fatal(err)
	}
	pbs, err := playbook.LoadDir(dir, reg)
	if err != nil {
		t.Fatal(err)
	}
	opts := engine.Options{Worker: "w", Log: zap.NewNop()}
	if keeper != nil {
		opts.Approvals = keeper
	}
	return engine.New(pbs, reg, actions.NewDispatcher(zap.NewNop()), newMemJournal(), opts), lookup, block
}

func gatedAlert() engine.Alert {
	return engine.Alert{ID: "g-1", Subject: "soar.alerts.x", Deliveries: 1,
		Body: map[string]any{"key": "k", "targets": []any{"h1", "h2"}}}
}

// Each item of a foreach step has its own gate; the run parks until each is decided, and a
// denied item is denied alone.
func TestApprovalGatesEachItem(t *testing.T) {
	t.Parallel()
	keeper := newGateKeeper()
	eng, lookup, block := gatedEngine(t, "live", keeper)
	ctx := context.Background()

	res := eng.Process(ctx, gatedAlert())
	if res.Parked != 1 || len(res.Outcomes) != 0 || res.Retry {
		t.Fatalf("first run: %+v, want parked with no outcome", res)
	}
	if got := keeper.prompts(); len(got) != 1 || got[0] != "Block h1 (open)?" {
		t.Fatalf("asked %v, want item 0's gate, rendered with the earlier step's output", got)
	}
	keeper.decideAll("h1", "approve", "alice")
	res = eng.Process(ctx, gatedAlert())
	if res.Parked != 1 || block.callCount() != 1 || len(keeper.prompts()) != 2 {
		t.Fatalf("after item 0 approved: %+v, %d blocks, prompts %v; want item 0 run and item 1 waiting", res, block.callCount(), keeper.prompts())
	}
	keeper.decideAll("h2", "deny", "bob")
	res = eng.Process(ctx, gatedAlert())
	if len(res.Outcomes) != 1 || res.Parked != 0 {
		t.Fatalf("after item 1 denied: %+v", res)
	}
	st := res.Outcomes[0].Steps[1]
	if st.Status != engine.StatusDenied || !strings.Contains(st.Error, "item 1: denied by bob") || res.Outcomes[0].Status != engine.StatusFailed {
		t.Errorf("block step = %+v, outcome %s; want denied naming item 1, playbook failed", st, res.Outcomes[0].Status)
	}
	if block.callCount() != 1 || lookup.callCount() != 1 {
		t.Errorf("lookup %d, block %d calls; want 1 each: the journal spares the lookup, the denial the block", lookup.callCount(), block.callCount())
	}
}

// Without approvals configured a gated step fails with a clear error; a shadow playbook asks
// nobody; a gate that cannot be reached hands the alert back.
func TestApprovalWithoutKeeperShadowAndErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	eng, _, block := gatedEngine(t, "live", nil)
	res := eng.Process(ctx, gatedAlert())
	if len(res.Outcomes) != 1 || !strings.Contains(res.Outcomes[0].Steps[1].Error, "keeps no approvals") || block.callCount() != 0 {
		t.Errorf("no keeper: %+v", res)
	}

	keeper := newGateKeeper()
	eng, _, block = gatedEngine(t, "shadow", keeper)
	res = eng.Process(ctx, gatedAlert())
	if len(res.Outcomes) != 1 || res.Outcomes[0].Status != engine.StatusShadowed || len(keeper.prompts()) != 0 || block.callCount() != 0 {
		t.Errorf("shadow: %+v, prompts %v", res, keeper.prompts())
	}

	keeper = newGateKeeper()
	keeper.err = errors.New("nats: timeout")
	eng, _, block = gatedEngine(t, "live", keeper)
	res = eng.Process(ctx, gatedAlert())
	if !res.Requeue || block.callCount() != 0 {
		t.Errorf("unreachable gate: %+v, want the alert handed back without a vendor call", res)
	}
}
