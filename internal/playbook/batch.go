package playbook

import (
	"strconv"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/riposte-soar/riposte/internal/actions"
)

// A step's `batch:` defaults and bounds (docs/playbooks.md). A batch fills only from the alerts
// one worker has in flight, so the default size is half the default --max-in-flight (64): one
// call fills while the other is at the vendor, where a larger one would wait out max_wait in
// every storm. The longest wait is short next to a step's retries and the queue's ack wait.
const (
	DefaultBatchSize = 32
	MaxBatchSize     = 1000
	DefaultBatchWait = 200 * time.Millisecond
	MaxBatchWait     = 5 * time.Second
)

// batchFields are the keys of a step's `batch:`.
var batchFields = table[*stepDraft]{
	{key: "max_size", doc: "the most targets one vendor call carries, from 2 to 1000 (default 32)",
		schema: func(*actions.Catalogue) obj { return obj{"type": "integer", "minimum": 2, "maximum": MaxBatchSize} },
		parse: func(p *parser, d *stepDraft, _, v *yaml.Node) {
			n, err := strconv.Atoi(v.Value)
			if v.Kind != yaml.ScalarNode || v.Tag != "!!int" || err != nil || n < 2 || n > MaxBatchSize {
				p.addf(v.Line, "%s: batch.max_size must be a whole number from 2 to %d, got %q", d.label, MaxBatchSize, v.Value)
				return
			}
			d.step.Batch.MaxSize = n
		}},
	{key: "max_wait", doc: "how long a call waits for more alerts once its first has come, as 200ms; at most 5s (default 200ms)",
		schema: func(*actions.Catalogue) obj { return def("duration") },
		parse: func(p *parser, d *stepDraft, _, v *yaml.Node) {
			t, ok := p.duration(v, d.label+": batch.max_wait", false)
			if !ok {
				return
			}
			if t > MaxBatchWait {
				p.addf(v.Line, "%s: batch.max_wait must be at most %s, got %q: every alert of the batch waits that long", d.label, MaxBatchWait, v.Value)
				return
			}
			d.step.Batch.MaxWait = t
		}},
}

// parseBatch reads `batch:` after the step's action, foreach and approval.
func (p *parser) parseBatch(d *stepDraft, k, v *yaml.Node) {
	if v.Kind != yaml.MappingNode {
		p.addf(v.Line, "%s: batch must be a mapping of %s", d.label, orList(batchFields.keys()))
		return
	}
	d.step.Batch = &actions.BatchPolicy{MaxSize: DefaultBatchSize, MaxWait: DefaultBatchWait}
	batchFields.read(p, v, d.label+": batch: ", d)
	switch {
	case d.known && d.step.spec.Batch == nil:
		msg := "action " + d.step.Action + " cannot batch: one call of it serves one target"
		if can := batchable(p.cat); len(can) > 0 {
			msg += "; the actions that can are " + orList(can)
		}
		p.addf(k.Line, "%s: %s", d.label, msg)
	case d.hasForeach:
		p.addf(k.Line, "%s: batch does not combine with foreach: give the action the whole list instead", d.label)
	case d.step.Approval != nil:
		p.addf(k.Line, "%s: batch does not combine with approval: each alert's approval is decided on its own", d.label)
	}
}

// batchable lists the catalogue's actions that can batch, when it can list them.
func batchable(cat Catalogue) []string {
	lister, ok := cat.(interface{ Names() []string })
	if !ok {
		return nil
	}
	var names []string
	for _, n := range lister.Names() {
		if s, ok := cat.Spec(n); ok && s.Batch != nil {
			names = append(names, n)
		}
	}
	return names
}
