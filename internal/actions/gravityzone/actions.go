package gravityzone

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/riposte-soar/riposte/internal/actions"
	"github.com/riposte-soar/riposte/internal/actions/vendorhttp"
)

const vendor = "gravityzone"

// The environment variables the worker reads for GravityZone.
const (
	EnvBaseURL   = "GZ_BASE_URL"
	EnvAPIKey    = "GZ_API_KEY"
	EnvCACert    = "GZ_CA_CERT"
	EnvRateLimit = "GZ_RATE_LIMIT"
)

// Vendor declares GravityZone to the worker: its variables, its actions, its client and its fake.
func Vendor() actions.Vendor {
	return actions.Vendor{
		Name:  vendor,
		Title: "Bitdefender GravityZone",
		Vars: []actions.Var{
			{Name: EnvBaseURL, Required: true,
				Doc: "the Control Center API access URL, e.g. https://cloud.gravityzone.bitdefender.com/api",
				Check: func(v string) error {
					_, err := vendorhttp.BaseURL("GravityZone access URL", v)
					return err
				}},
			{Name: EnvAPIKey, Required: true, Secret: true,
				Doc:   "an API key with the Incidents API enabled",
				Check: checkAPIKey},
			// The service allows a key about 10 requests a second.
			actions.RateVar(EnvRateLimit, "10"),
			actions.CAVar(EnvCACert),
		},
		RateLimitVar: EnvRateLimit,
		CAVar:        EnvCACert,
		Specs:        actions.SpecsOf(defs()),
		Open:         open,
		Simulate:     simulate,
	}
}

func open(s actions.Settings, d actions.Deps) (*actions.Instance, error) {
	log := d.Log
	if log != nil {
		log = log.Named(vendor)
	}
	c, err := NewClient(Config{BaseURL: s[EnvBaseURL], APIKey: s[EnvAPIKey], HTTPClient: d.HTTP, UserAgent: d.UserAgent}, log)
	if err != nil {
		return nil, err
	}
	return &actions.Instance{Actions: actions.Bind(c, defs())}, nil
}

// simulate serves a fake GravityZone under an /api path, as the real access URL has one.
func simulate() (actions.Settings, func(), error) {
	const key = "riposte-simulate-gravityzone-key"
	f := NewFake(key)
	f.KeepHistory(vendorhttp.SimulateHistory)
	url, stop := f.Start()
	return actions.Settings{EnvBaseURL: url, EnvAPIKey: key}, stop, nil
}

func hashTypeChoices() []actions.Choice {
	return []actions.Choice{{Name: "sha256", Value: HashSHA256}, {Name: "md5", Value: HashMD5}}
}

func ruleTypeChoices() []actions.Choice {
	return []actions.Choice{{Name: "detection", Value: RuleDetection}, {Name: "exclusion", Value: RuleExclusion}}
}

func statusChoices() []actions.Choice {
	return []actions.Choice{{Name: "open", Value: 1}, {Name: "investigating", Value: 2}, {Name: "closed", Value: 3}, {Name: "false_positive", Value: 4}}
}

func idInput(name, doc string, required bool) actions.Input {
	return actions.Input{Name: name, Type: actions.String, Required: required, Doc: doc,
		Verify: func(v any) error { return vendorhttp.ID(v.(string)) }}
}

func companyInput(doc string) actions.Input {
	return idInput("companyId", doc, false)
}

func pagingInputs() []actions.Input {
	return []actions.Input{
		{Name: "page", Type: actions.Int, Bounded: true, Min: 1, Max: math.MaxInt32, Default: "1",
			Doc: "the results page to read (with all, the first one)"},
		{Name: "perPage", Type: actions.Int, Bounded: true, Min: 1, Max: MaxPerPage, Default: strconv.Itoa(DefaultPerPage),
			Doc: "items per page, at most 100; with all and no perPage riposte asks 100, so fewer requests count against the rate limit"},
		{Name: "all", Type: actions.Bool, Default: "false",
			Doc: "riposte's own: follow pagesCount and return the items of every page from page on (at most 100 pages), one request per page"},
	}
}

func incidentInputs() []actions.Input {
	return []actions.Input{
		{Name: "type", Type: actions.String, Required: true, Enum: []string{IncidentsType, ExtendedIncidentsType},
			Doc: "incidents (Endpoint Incidents and Detected Threats) or extendedIncidents (the Extended Incidents tab)"},
		idInput("incidentId", "the incident's id, the incident_id of a New Incident event", true),
	}
}

const listOutput = "`{\"items\": [...], \"page\", \"pagesCount\", \"perPage\", \"total\"}`: the items as GravityZone answers them; with `all`, every page's items and `page` the first page read. `pagesCount` and `total` are left out when the service does not send them."

func defs() []actions.Def[*Client] {
	return []actions.Def[*Client]{
		{
			Spec: actions.Spec{
				Name:   vendor + ".add_to_blocklist",
				Vendor: vendor,
				Doc:    "Add file hashes, all of one type, to the GravityZone blocklist in one call: JSON-RPC addToBlocklist.",
				Inputs: []actions.Input{
					{Name: "hashType", Type: actions.Int, Required: true, Choices: hashTypeChoices(),
						Doc: "the algorithm of every hash in hashList"},
					{Name: "hashList", Type: actions.StringList, Required: true,
						Doc: "the hashes, hexadecimal: 64 digits for sha256, 32 for md5; sent as given",
						Verify: func(v any) error {
							for i, h := range v.([]string) {
								if err := checkHex(h); err != nil {
									return fmt.Errorf("item %d %w", i, err)
								}
							}
							return nil
						}},
					companyInput("the company the blocklist items belong to; the key's own company when absent"),
					{Name: "sourceInfo", Type: actions.String, Required: true, Doc: "a description for the hashes, shown in Control Center",
						Verify: func(v any) error { return nonBlank(v.(string)) }},
				},
				Validate: func(in actions.Inputs) error {
					t, _ := in.Int("hashType")
					if err := checkHashes(t, in.StringList("hashList")); err != nil {
						return fmt.Errorf("input \"hashList\": %w", err)
					}
					return nil
				},
				Output: "`{\"added\": true, \"count\": N}`: N is how many hashes were sent.",
				// The document does not say whether a hash already listed is refused or listed twice.
				Idempotent: false,
				// One call takes many hashes, and succeeds or fails as a whole.
				Batch: &actions.Batch{Input: "hashList", Share: shareAdded},
			},
			Run: func(ctx context.Context, c *Client, in actions.Inputs) (actions.Output, error) {
				t, _ := in.Int("hashType")
				hashes := in.StringList("hashList")
				if err := c.AddToBlocklist(ctx, t, hashes, in.String("companyId"), in.String("sourceInfo")); err != nil {
					return nil, err
				}
				return actions.Output{"added": true, "count": len(hashes)}, nil
			},
		},
		{
			Spec: actions.Spec{
				Name:   vendor + ".get_blocklist_items",
				Vendor: vendor,
				Doc:    "List the hashes on the GravityZone blocklist: JSON-RPC getBlocklistItems.",
				Inputs: append([]actions.Input{
					companyInput("list only the blocklist items of this company"),
				}, pagingInputs()...),
				Output:     listOutput + " Each item has `id`, `hashType`, `hash`, `source`, `sourceInfo`, `companyId` and, when known, `filename`.",
				Idempotent: true,
			},
			Run: func(ctx context.Context, c *Client, in actions.Inputs) (actions.Output, error) {
				p, err := c.GetBlocklistItems(ctx, listQuery(in, false))
				if err != nil {
					return nil, err
				}
				return pageOutput(p), nil
			},
		},
		{
			Spec: actions.Spec{
				Name:   vendor + ".remove_from_blocklist",
				Vendor: vendor,
				Doc:    "Remove one item from the GravityZone blocklist by its id: JSON-RPC removeFromBlocklist.",
				Inputs: []actions.Input{
					idInput("hashItemId", "the blocklist item's id (the id of a get_blocklist_items item), not the hash", true),
				},
				Output: "`{\"removed\": true}`.",
				// Once removed the item is gone: a repeat names an id the service no longer knows.
				Idempotent: false,
			},
			Run: func(ctx context.Context, c *Client, in actions.Inputs) (actions.Output, error) {
				if err := c.RemoveFromBlocklist(ctx, in.String("hashItemId")); err != nil {
					return nil, err
				}
				return actions.Output{"removed": true}, nil
			},
		},
		endpointDef("isolate_endpoint", "Isolate an endpoint from the network: JSON-RPC createIsolateEndpointTask.",
			"the id of the endpoint to isolate", (*Client).IsolateEndpoint),
		endpointDef("restore_endpoint", "Restore an isolated endpoint to the network: JSON-RPC createRestoreEndpointFromIsolationTask.",
			"the id of the endpoint to restore", (*Client).RestoreEndpoint),
		{
			Spec: actions.Spec{
				Name:   vendor + ".create_custom_rule",
				Vendor: vendor,
				Doc:    "Create a custom detection or exclusion rule: JSON-RPC createCustomRule. The settings are checked against the document's table of targets and fields before any request.",
				Inputs: []actions.Input{
					{Name: "type", Type: actions.Int, Choices: ruleTypeChoices(),
						Doc: "the kind of rule; required for a registry target, which only detection rules have; not sent when absent"},
					companyInput("the company to create the rule in; the key's own company when absent"),
					{Name: "name", Type: actions.String, Required: true, Doc: "the rule's name",
						Verify: func(v any) error { return nonBlank(v.(string)) }},
					{Name: "description", Type: actions.String, Doc: "the rule's description"},
					{Name: "tags", Type: actions.StringList, Doc: "tags for the rule",
						Verify: func(v any) error {
							for i, t := range v.([]string) {
								if err := nonBlank(t); err != nil {
									return fmt.Errorf("item %d %w", i, err)
								}
							}
							return nil
						}},
					{Name: "settings", Type: actions.Object, Required: true,
						Doc:    "`{status, severity (detection only), target: process|file|connection|registry, criteriaList: [{field, relation: is|contains|any, value}]}`; any takes a list; ports are 0-65535, IPs valid; registry only for detection rules",
						Verify: func(v any) error { return checkRuleSettings(v.(map[string]any), 0) }},
					{Name: "returnRuleId", Type: actions.Bool, Default: "true",
						Doc: "ask for the new rule's id; riposte's default is true (the service's is false), so the output has it"},
				},
				Validate: func(in actions.Inputs) error {
					t, _ := in.Int("type")
					s, _ := in["settings"].(map[string]any)
					return checkRuleType(s, t)
				},
				Output: "`{\"created\": true, \"ruleId\": \"…\"}`; without `ruleId` when the service answered only true (returnRuleId false).",
				// Each call creates another rule.
				Idempotent: false,
			},
			Run: func(ctx context.Context, c *Client, in actions.Inputs) (actions.Output, error) {
				t, _ := in.Int("type")
				ret, set := in.Bool("returnRuleId")
				settings, _ := in["settings"].(map[string]any)
				id, err := c.CreateCustomRule(ctx, CustomRule{
					Type: t, CompanyID: in.String("companyId"), Name: in.String("name"), Description: in.String("description"),
					Tags: in.StringList("tags"), Settings: settings, ReturnRuleID: ret || !set,
				})
				if err != nil {
					return nil, err
				}
				out := actions.Output{"created": true}
				if id != "" {
					out["ruleId"] = id
				}
				return out, nil
			},
		},
		{
			Spec: actions.Spec{
				Name:   vendor + ".get_custom_rules",
				Vendor: vendor,
				Doc:    "List custom rules: JSON-RPC getCustomRulesList.",
				Inputs: append([]actions.Input{
					companyInput("the company whose rules to list; the key's own company when absent"),
					{Name: "type", Type: actions.Int, Choices: ruleTypeChoices(), Doc: "list only rules of this kind; both kinds when absent"},
				}, pagingInputs()...),
				Output:     listOutput + " Each item has `id`, `name`, `ownerId`, `description`, `companyId`, `status`, `tags` and `settings`.",
				Idempotent: true,
			},
			Run: func(ctx context.Context, c *Client, in actions.Inputs) (actions.Output, error) {
				p, err := c.GetCustomRules(ctx, listQuery(in, true))
				if err != nil {
					return nil, err
				}
				return pageOutput(p), nil
			},
		},
		{
			Spec: actions.Spec{
				Name:   vendor + ".delete_custom_rule",
				Vendor: vendor,
				Doc:    "Delete a custom rule: JSON-RPC deleteCustomRule.",
				Inputs: []actions.Input{
					{Name: "type", Type: actions.Int, Required: true, Choices: ruleTypeChoices(), Doc: "the kind of the rule to delete"},
					idInput("ruleId", "the rule's id", true),
				},
				Output: "`{\"deleted\": true}`.",
				// Once deleted the rule is gone: a repeat names an id the service no longer knows.
				Idempotent: false,
			},
			Run: func(ctx context.Context, c *Client, in actions.Inputs) (actions.Output, error) {
				t, _ := in.Int("type")
				if err := c.DeleteCustomRule(ctx, t, in.String("ruleId")); err != nil {
					return nil, err
				}
				return actions.Output{"deleted": true}, nil
			},
		},
		{
			Spec: actions.Spec{
				Name:   vendor + ".change_incident_status",
				Vendor: vendor,
				Doc:    "Set an incident's status: JSON-RPC changeIncidentStatus. The service succeeds when the incident already has that status.",
				Inputs: append(incidentInputs(),
					actions.Input{Name: "status", Type: actions.Int, Required: true, Choices: statusChoices(), Doc: "the status to set"}),
				Output:     "`{\"done\": true, \"status\": N}`: N is the status set, as a number.",
				Idempotent: true,
			},
			Run: func(ctx context.Context, c *Client, in actions.Inputs) (actions.Output, error) {
				status, _ := in.Int("status")
				if err := c.ChangeIncidentStatus(ctx, in.String("type"), in.String("incidentId"), status); err != nil {
					return nil, err
				}
				return actions.Output{"done": true, "status": status}, nil
			},
		},
		{
			Spec: actions.Spec{
				Name:   vendor + ".update_incident_note",
				Vendor: vendor,
				Doc:    "Set an incident's note, replacing the note it had: JSON-RPC updateIncidentNote.",
				Inputs: append(incidentInputs(),
					actions.Input{Name: "note", Type: actions.String, Required: true, MaxLen: MaxNoteLen,
						Doc: "the note's text; it overwrites the incident's note, so render the whole note, not an addition"}),
				Output: "`{\"done\": true, \"lastUpdated\": \"…\"}`: lastUpdated is the service's timestamp of the change, left out when it sends none.",
				// The note is replaced, not appended to: twice leaves it as once.
				Idempotent: true,
			},
			Run: func(ctx context.Context, c *Client, in actions.Inputs) (actions.Output, error) {
				at, err := c.UpdateIncidentNote(ctx, in.String("type"), in.String("incidentId"), in.String("note"))
				if err != nil {
					return nil, err
				}
				out := actions.Output{"done": true}
				if at != "" {
					out["lastUpdated"] = at
				}
				return out, nil
			},
		},
	}
}

// endpointDef declares an endpoint task: one endpointId, a Boolean answer.
func endpointDef(name, doc, idDoc string, call func(*Client, context.Context, string) error) actions.Def[*Client] {
	return actions.Def[*Client]{
		Spec: actions.Spec{
			Name:   vendor + "." + name,
			Vendor: vendor,
			Doc:    doc,
			Inputs: []actions.Input{idInput("endpointId", idDoc, true)},
			Output: "`{\"taskCreated\": true}`: the service accepted the task; the endpoint changes when it runs.",
			// Isolation and restore set a state: a second task leaves the endpoint as the first did.
			Idempotent: true,
		},
		Run: func(ctx context.Context, c *Client, in actions.Inputs) (actions.Output, error) {
			if err := call(c, ctx, in.String("endpointId")); err != nil {
				return nil, err
			}
			return actions.Output{"taskCreated": true}, nil
		},
	}
}

func listQuery(in actions.Inputs, typed bool) ListQuery {
	q := ListQuery{CompanyID: in.String("companyId")}
	q.Page, _ = in.Int("page")
	q.PerPage, _ = in.Int("perPage")
	q.All, _ = in.Bool("all")
	if q.All && q.PerPage == 0 {
		q.PerPage = MaxPerPage
	}
	if typed {
		q.Type, _ = in.Int("type")
	}
	return q
}

func pageOutput(p *Page) actions.Output {
	items := make([]any, len(p.Items))
	for i, it := range p.Items {
		items[i] = it
	}
	out := actions.Output{"items": items, "page": p.Page, "perPage": p.PerPage}
	if p.PagesCount >= 0 {
		out["pagesCount"] = p.PagesCount
	}
	if p.Total >= 0 {
		out["total"] = p.Total
	}
	return out
}

func nonBlank(s string) error {
	if strings.TrimSpace(s) == "" {
		return errors.New("must not be empty")
	}
	return nil
}

// shareAdded is one step's part of a batched addToBlocklist: the service answers true or an
// error for the whole call, so every step shares its verdict and counts its own hashes.
func shareAdded(_ actions.Output, err error, targets []string) (actions.Output, error) {
	if err != nil {
		return nil, err
	}
	return actions.Output{"added": true, "count": len(targets)}, nil
}
