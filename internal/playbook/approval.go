package playbook

import (
	"fmt"
	"strconv"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/riposte-soar/riposte/internal/actions"
)

// Approval is a step's gate: people must approve before its vendor is called.
type Approval struct {
	Timeout   time.Duration // how long the run waits for the decision (default 4h)
	OnTimeout string        // "deny" (the default) or "approve": what an unanswered request becomes
	Approvers int           // how many distinct people must approve (default 1)
	prompt    value
}

// Approval decisions, in requests, decisions and outcomes alike.
const (
	Approve = "approve"
	Deny    = "deny"
)

var onTimeouts = []string{Deny, Approve}

// MaxApprovalTimeout is how long an approval gate is kept (the approvals bucket's TTL).
const MaxApprovalTimeout = 30 * 24 * time.Hour

// approvalFields are the keys of a step's `approval:`.
var approvalFields = table[*stepDraft]{
	{key: "prompt", required: true, doc: "what the approvers are asked, rendered like a with value",
		schema: func(*actions.Catalogue) obj { return obj{"type": "string"} },
		parse: func(p *parser, d *stepDraft, _, v *yaml.Node) {
			var rs refSet
			cv, ok := p.compileValue(v, d.label+": approval.prompt", d.scope(), &rs)
			if !ok {
				return
			}
			d.refs = append(d.refs, rs.steps...)
			p.useVars(&rs, d.label)
			d.step.Approval.prompt = cv.val
		}},
	{key: "timeout", doc: "how long the run waits for a decision, as 4h or 30m (default 4h)",
		schema: func(*actions.Catalogue) obj { return def("duration") },
		parse: func(p *parser, d *stepDraft, _, v *yaml.Node) {
			t, ok := p.duration(v, d.label+": approval.timeout", false)
			switch {
			case !ok:
			case t > MaxApprovalTimeout:
				// The approvals bucket forgets a gate after 30 days.
				p.addf(v.Line, "%s: approval.timeout %s is longer than the %s an approval is kept", d.label, t, MaxApprovalTimeout)
			default:
				d.step.Approval.Timeout = t
			}
		}},
	{key: "on_timeout", doc: "deny (the default) or approve: what an unanswered request becomes",
		schema: func(*actions.Catalogue) obj { return obj{"enum": onTimeouts} },
		parse: func(p *parser, d *stepDraft, _, v *yaml.Node) {
			if s, ok := p.oneOf(v, d.label+": approval.on_timeout", onTimeouts); ok {
				d.step.Approval.OnTimeout = s
			}
		}},
	{key: "approvers", doc: "how many distinct people must approve (default 1)",
		schema: func(*actions.Catalogue) obj { return obj{"type": "integer", "minimum": 1} },
		parse: func(p *parser, d *stepDraft, _, v *yaml.Node) {
			n, err := strconv.Atoi(v.Value)
			if err != nil || n < 1 || v.Kind != yaml.ScalarNode {
				p.addf(v.Line, "%s: approval.approvers must be a whole number of at least 1, got %q", d.label, v.Value)
				return
			}
			d.step.Approval.Approvers = n
		}},
}

func (p *parser) parseApproval(d *stepDraft, _, v *yaml.Node) {
	if v.Kind != yaml.MappingNode {
		p.addf(v.Line, "%s: approval must be a mapping of %s", d.label, orList(approvalFields.keys()))
		return
	}
	d.step.Approval = &Approval{Timeout: 4 * time.Hour, OnTimeout: Deny, Approvers: 1}
	approvalFields.read(p, v, d.label+": approval: ", d)
}

// RenderPrompt renders the step's approval prompt for one run (and item, under foreach).
func (s *Step) RenderPrompt(env *Env, item any) (string, error) {
	if s.Approval == nil || s.Approval.prompt == nil {
		return "", nil
	}
	r, err := s.book.prepare(env, item)
	if err != nil {
		return "", err
	}
	defer r.release()
	v, err := s.Approval.prompt.render(r)
	if err != nil {
		return "", fmt.Errorf("step %q approval prompt: %w", s.ID, err)
	}
	if str, ok := v.(string); ok {
		return str, nil
	}
	return fmt.Sprint(v), nil
}
