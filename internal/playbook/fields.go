package playbook

import (
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/riposte-soar/riposte/internal/actions"
)

// field is one key of a mapping in a playbook file. The keys the loader accepts, its
// did-you-mean suggestions, how each value is parsed and the JSON Schema (Schema) all come
// from the tables below: a new key is one entry.
type field[T any] struct {
	key      string
	required bool
	doc      string // one line, the schema's description of the key
	// schema describes the value for the JSON Schema; cat may be nil.
	schema func(cat *actions.Catalogue) obj
	parse  func(p *parser, t T, k, v *yaml.Node)
}

type table[T any] []field[T]

func (tb table[T]) keys() []string {
	keys := make([]string, len(tb))
	for i, f := range tb {
		keys[i] = f.key
	}
	return keys
}

// only is the sub-table of the named keys, in the table's order.
func (tb table[T]) only(keys ...string) table[T] {
	var out table[T]
	for _, f := range tb {
		for _, k := range keys {
			if f.key == k {
				out = append(out, f)
			}
		}
	}
	return out
}

// read parses mapping n into t: each known key by its entry, in the table's order whatever
// the file's, so an entry may rely on those above it; a problem for every unknown or duplicate
// key (with the nearest known one) and every missing required one. prefix leads every message,
// naming the mapping. It returns the keys found.
func (tb table[T]) read(p *parser, n *yaml.Node, prefix string, t T) map[string]bool {
	type kv struct{ k, v *yaml.Node }
	nodes := map[string]kv{}
	found := p.pairs(n, tb.keys(), prefix, func(k, v *yaml.Node) { nodes[k.Value] = kv{k, v} })
	for _, f := range tb {
		if e, ok := nodes[f.key]; ok {
			f.parse(p, t, e.k, e.v)
		} else if f.required {
			p.addf(n.Line, "%smissing required key %q", prefix, f.key)
		}
	}
	return found
}

// The choices of the keys that take one word, for the loader's messages and the schema alike.
var (
	modes    = []string{"live", "shadow"}
	onErrors = []string{string(OnErrorStop), string(OnErrorContinue)}
)

// topFields are the keys at the top of a playbook file.
var topFields = table[*Playbook]{
	{key: "name", required: true,
		doc: `unique across files; letters, digits, "-" and "_"; used in outcome subjects and metrics; "unmatched" is reserved`,
		schema: func(*actions.Catalogue) obj {
			return obj{"type": "string", "pattern": nameRE.String(), "not": obj{"enum": []any{reservedName, decisionsName}}}
		},
		parse: func(p *parser, _ *Playbook, _, v *yaml.Node) { p.parseName(v) }},
	{key: "description", doc: "free text",
		schema: func(*actions.Catalogue) obj { return obj{"type": "string"} },
		parse: func(p *parser, b *Playbook, _, v *yaml.Node) {
			if s, ok := p.str(v, "description"); ok {
				b.Description = s
			}
		}},
	{key: "on", required: true,
		doc: `NATS subject filters: one or a list; "*" matches one token, ">" one or more trailing tokens`,
		schema: func(*actions.Catalogue) obj {
			return obj{"anyOf": []any{def("subjectFilter"), obj{"type": "array", "minItems": 1, "items": def("subjectFilter")}}}
		},
		parse: func(p *parser, _ *Playbook, _, v *yaml.Node) { p.parseOn(v) }},
	{key: "mode", doc: `live (the default) or shadow: a shadow playbook calls no vendor and its outcome says "shadowed"`,
		schema: func(*actions.Catalogue) obj { return obj{"enum": modes} },
		parse: func(p *parser, b *Playbook, _, v *yaml.Node) {
			if m, ok := p.oneOf(v, "mode", modes); ok {
				b.Shadow = m == "shadow"
			}
		}},
	{key: "when", doc: "an expression that must yield bool; absent means every alert on the subjects",
		schema: func(*actions.Catalogue) obj { return def("condition") },
		parse:  func(p *parser, _ *Playbook, _, v *yaml.Node) { p.parseWhen(v) }},
	{key: "vars", doc: "values computed once per run, in order, from the alert and earlier vars; read as vars.<name>",
		schema: func(*actions.Catalogue) obj { return obj{"type": []any{"object", "null"}} },
		parse:  func(p *parser, _ *Playbook, _, v *yaml.Node) { p.parseVars(v) }},
	{key: "defaults", doc: "retry, timeout and on_error for every step that does not set its own",
		schema: func(cat *actions.Catalogue) obj { return objectSchema(defaultFields, cat) },
		parse:  func(p *parser, _ *Playbook, _, v *yaml.Node) { p.parseDefaults(v) }},
	{key: "concurrency_key", doc: "rendered like an input from the alert and vars: runs with the same key never overlap",
		schema: func(*actions.Catalogue) obj { return obj{"type": []any{"string", "number", "boolean"}} },
		parse:  func(p *parser, _ *Playbook, _, v *yaml.Node) { p.parseConcurrencyKey(v) }},
	{key: "steps", required: true, doc: "the steps, run in order",
		schema: func(*actions.Catalogue) obj { return obj{"type": "array", "minItems": 1, "items": def("step")} },
		parse:  func(p *parser, _ *Playbook, _, v *yaml.Node) { p.parseSteps(v) }},
}

// stepFields are the keys of one step. foreach and as come before if and with, which read
// the item; batch comes last, as it reads the action, foreach and approval.
var stepFields = table[*stepDraft]{
	{key: "id", required: true, doc: "unique in the playbook; later steps read steps.<id>",
		schema: func(*actions.Catalogue) obj { return obj{"type": "string", "pattern": stepIDRE.String()} },
		parse:  (*parser).parseStepID},
	{key: "action", required: true, doc: "a name from the action catalogue",
		schema: func(cat *actions.Catalogue) obj {
			if cat == nil {
				return obj{"type": "string"}
			}
			return obj{"enum": cat.Names()}
		},
		parse: (*parser).parseAction},
	{key: "foreach", doc: "a list, or ${{ }} yielding one: the step runs once per item, bound to the name in as",
		schema: func(*actions.Catalogue) obj { return obj{"anyOf": []any{obj{"type": "array"}, def("template")}} },
		parse:  (*parser).parseForeach},
	{key: "as", doc: `the name of foreach's item in the step's if and with (default "item")`,
		schema: func(*actions.Catalogue) obj { return obj{"type": "string", "pattern": stepIDRE.String()} },
		parse:  (*parser).parseAs},
	{key: "if", doc: "an expression that must yield bool; false skips the step (or the item)",
		schema: func(*actions.Catalogue) obj { return def("condition") },
		parse:  (*parser).parseIf},
	{key: "with", doc: "the action's inputs",
		schema: func(*actions.Catalogue) obj { return obj{"type": []any{"object", "null"}} },
		parse:  (*parser).parseWith},
	{key: "retry", doc: "the attempts of one call: max_attempts, initial_interval, max_interval",
		schema: func(cat *actions.Catalogue) obj { return objectSchema(retryFields, cat) },
		parse:  (*parser).parseRetry},
	{key: "timeout", doc: `the deadline of one attempt, as 30s or 500ms (default 30s; 0 for none)`,
		schema: func(*actions.Catalogue) obj { return obj{"anyOf": []any{def("duration"), obj{"const": 0}}} },
		parse: func(p *parser, d *stepDraft, _, v *yaml.Node) {
			if t, ok := p.duration(v, d.label+": timeout", true); ok {
				d.step.Retry.AttemptTimeout = t
			}
		}},
	{key: "on_error", doc: "stop (the default): a failed step ends the run; continue: the run goes on",
		schema: func(*actions.Catalogue) obj { return obj{"enum": onErrors} },
		parse: func(p *parser, d *stepDraft, _, v *yaml.Node) {
			if oe, ok := p.oneOf(v, d.label+": on_error", onErrors); ok {
				d.step.OnError = OnError(oe)
			}
		}},
	{key: "approval", doc: "people must approve before the step's vendor is called: prompt, timeout, on_timeout, approvers",
		schema: func(cat *actions.Catalogue) obj { return objectSchema(approvalFields, cat) },
		parse:  (*parser).parseApproval},
	{key: "batch", doc: "share one vendor call with the same action's steps of other alerts: max_size, max_wait; only for actions that batch, not with foreach or approval",
		schema: func(cat *actions.Catalogue) obj { return objectSchema(batchFields, cat) },
		parse:  (*parser).parseBatch},
}

// defaultFields are the keys of `defaults:`, parsed as a step's are into the step every step
// starts from.
var defaultFields = stepFields.only("retry", "timeout", "on_error")

// retryFields are the keys of a `retry:`.
var retryFields = table[*stepDraft]{
	{key: "max_attempts", doc: "attempts in all, the first included (default 4)",
		schema: func(*actions.Catalogue) obj { return obj{"type": "integer", "minimum": 1} },
		parse:  (*parser).parseMaxAttempts},
	{key: "initial_interval", doc: "the wait before the second attempt (default 500ms)",
		schema: func(*actions.Catalogue) obj { return def("duration") },
		parse: func(p *parser, d *stepDraft, k, v *yaml.Node) {
			if t, ok := p.duration(v, d.label+": retry."+k.Value, false); ok {
				d.step.Retry.InitialInterval, d.initialLine = t, v.Line
			}
		}},
	{key: "max_interval", doc: "the cap on any one wait (default 30s)",
		schema: func(*actions.Catalogue) obj { return def("duration") },
		parse: func(p *parser, d *stepDraft, k, v *yaml.Node) {
			if t, ok := p.duration(v, d.label+": retry."+k.Value, false); ok {
				d.step.Retry.MaxInterval = t
			}
		}},
}

// orList joins words as "a, b or c" for messages.
func orList(words []string) string {
	switch len(words) {
	case 0:
		return ""
	case 1:
		return words[0]
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}
