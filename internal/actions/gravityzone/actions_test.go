package gravityzone

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/riposte-soar/riposte/internal/actions"
	"github.com/riposte-soar/riposte/internal/playbook"
)

func actionByName(t *testing.T, c *Client, name string) actions.Action {
	t.Helper()
	reg, err := actions.NewRegistry(actions.Bind(c, defs())...)
	if err != nil {
		t.Fatal(err)
	}
	a, ok := reg.Lookup(name)
	if !ok {
		t.Fatalf("no action %q; have %v", name, reg.Names())
	}
	return a
}

// jsonOf renders v and reads it back, so Go and JSON numbers compare alike.
func jsonOf(t *testing.T, v any) any {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("%v does not marshal: %v", v, err)
	}
	var out any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func parseJSON(t *testing.T, s string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("bad test JSON %s: %v", s, err)
	}
	return v
}

func TestCatalogueSpecs(t *testing.T) {
	t.Parallel()
	type in struct {
		name     string
		typ      actions.Type
		required bool
	}
	paging := []in{{"page", actions.Int, false}, {"perPage", actions.Int, false}, {"all", actions.Bool, false}}
	incident := []in{{"type", actions.String, true}, {"incidentId", actions.String, true}}
	want := map[string]struct {
		inputs     []in
		idempotent bool
	}{
		"gravityzone.add_to_blocklist": {[]in{{"hashType", actions.Int, true}, {"hashList", actions.StringList, true},
			{"companyId", actions.String, false}, {"sourceInfo", actions.String, true}}, false},
		"gravityzone.get_blocklist_items":   {append([]in{{"companyId", actions.String, false}}, paging...), true},
		"gravityzone.remove_from_blocklist": {[]in{{"hashItemId", actions.String, true}}, false},
		"gravityzone.isolate_endpoint":      {[]in{{"endpointId", actions.String, true}}, true},
		"gravityzone.restore_endpoint":      {[]in{{"endpointId", actions.String, true}}, true},
		"gravityzone.create_custom_rule": {[]in{{"type", actions.Int, false}, {"companyId", actions.String, false},
			{"name", actions.String, true}, {"description", actions.String, false}, {"tags", actions.StringList, false},
			{"settings", actions.Object, true}, {"returnRuleId", actions.Bool, false}}, false},
		"gravityzone.get_custom_rules":       {append([]in{{"companyId", actions.String, false}, {"type", actions.Int, false}}, paging...), true},
		"gravityzone.delete_custom_rule":     {[]in{{"type", actions.Int, true}, {"ruleId", actions.String, true}}, false},
		"gravityzone.change_incident_status": {append(incident, in{"status", actions.Int, true}), true},
		"gravityzone.update_incident_note":   {append(incident, in{"note", actions.String, true}), true},
	}
	v := Vendor()
	if v.Name != "gravityzone" || v.Title != "Bitdefender GravityZone" || v.RateLimitVar != EnvRateLimit || v.Open == nil || v.Simulate == nil {
		t.Errorf("vendor = %q %q %q", v.Name, v.Title, v.RateLimitVar)
	}
	if len(v.Specs) != len(want) {
		t.Fatalf("%d actions, want %d", len(v.Specs), len(want))
	}
	for _, s := range v.Specs {
		w, ok := want[s.Name]
		if !ok {
			t.Errorf("unexpected action %q", s.Name)
			continue
		}
		if s.Vendor != "gravityzone" || s.Doc == "" || s.Output == "" || s.Idempotent != w.idempotent {
			t.Errorf("%s: vendor %q, doc %q, output %q, idempotent %t", s.Name, s.Vendor, s.Doc, s.Output, s.Idempotent)
		}
		var got []in
		for _, i := range s.Inputs {
			got = append(got, in{i.Name, i.Type, i.Required})
			if i.Doc == "" {
				t.Errorf("%s: input %q has no doc", s.Name, i.Name)
			}
		}
		if !reflect.DeepEqual(got, w.inputs) {
			t.Errorf("%s: inputs %v, want %v", s.Name, got, w.inputs)
		}
	}
	defaults := map[string]string{"page": "1", "perPage": "30", "all": "false", "returnRuleId": "true"}
	for _, s := range v.Specs {
		for _, i := range s.Inputs {
			if d, ok := defaults[i.Name]; ok && i.Default != d {
				t.Errorf("%s: input %q default %q, want %q", s.Name, i.Name, i.Default, d)
			}
		}
	}
}

// Every action against the fake: the request the document describes, and the output.
func TestActionRequestsAndOutputs(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		action string
		setup  func(t *testing.T, f *Fake, c *Client)
		in     actions.Inputs
		method string
		params string // the exact params sent, as JSON
		output string // the exact output, as JSON
		check  func(t *testing.T, f *Fake)
	}{
		{
			name: "add md5 hashes by friendly name", action: "gravityzone.add_to_blocklist",
			in:     actions.Inputs{"hashType": "md5", "hashList": []any{testMD5, testMD5b}, "companyId": FakeCompanyID, "sourceInfo": "Added from public API"},
			method: "addToBlocklist",
			params: `{"companyId": "` + FakeCompanyID + `", "hashType": 2, "hashList": ["` + testMD5 + `", "` + testMD5b + `"], "sourceInfo": "Added from public API"}`,
			output: `{"added": true, "count": 2}`,
			check: func(t *testing.T, f *Fake) {
				items := f.BlocklistItems()
				if len(items) != 2 || items[0]["hash"] != testMD5 || f.Effects("blocklist", testMD5b) != 1 {
					t.Errorf("blocklist = %v", items)
				}
			},
		},
		{
			name: "add a sha256 hash by number, upper case kept", action: "gravityzone.add_to_blocklist",
			in:     actions.Inputs{"hashType": 1, "hashList": strings.ToUpper(testSHA256), "sourceInfo": "riposte"},
			method: "addToBlocklist",
			params: `{"hashType": 1, "hashList": ["` + strings.ToUpper(testSHA256) + `"], "sourceInfo": "riposte"}`,
			output: `{"added": true, "count": 1}`,
		},
		{
			name: "list blocklist items", action: "gravityzone.get_blocklist_items",
			setup: func(t *testing.T, f *Fake, _ *Client) {
				f.AddBlocklistItem(HashMD5, testMD5b, "", "Added from public API")
			},
			in:     actions.Inputs{"companyId": FakeCompanyID},
			method: "getBlocklistItems",
			params: `{"companyId": "` + FakeCompanyID + `", "page": 1, "perPage": 30}`,
			output: `{"items": [{"companyId": "` + FakeCompanyID + `", "hash": "` + testMD5b + `", "hashType": 2, "id": "5b7ac19bb1a43dfb107b23c6",
				"source": 3, "sourceInfo": "Added from public API"}], "page": 1, "pagesCount": 1, "perPage": 30, "total": 1}`,
		},
		{
			name: "list blocklist items, all pages at 100", action: "gravityzone.get_blocklist_items",
			in:     actions.Inputs{"all": true},
			method: "getBlocklistItems",
			params: `{"page": 1, "perPage": 100}`,
			output: `{"items": [], "page": 1, "pagesCount": 0, "perPage": 100, "total": 0}`,
		},
		{
			name: "remove a blocklist item", action: "gravityzone.remove_from_blocklist",
			setup: func(t *testing.T, f *Fake, _ *Client) {
				f.AddBlocklistItem(HashMD5, testMD5, "", "x")
			},
			in:     actions.Inputs{"hashItemId": "5b7ac19bb1a43dfb107b23c6"},
			method: "removeFromBlocklist",
			params: `{"hashItemId": "5b7ac19bb1a43dfb107b23c6"}`,
			output: `{"removed": true}`,
			check: func(t *testing.T, f *Fake) {
				if len(f.BlocklistItems()) != 0 {
					t.Errorf("blocklist = %v", f.BlocklistItems())
				}
			},
		},
		{
			name: "isolate", action: "gravityzone.isolate_endpoint",
			in:     actions.Inputs{"endpointId": testEndpt},
			method: "createIsolateEndpointTask",
			params: `{"endpointId": "` + testEndpt + `"}`,
			output: `{"taskCreated": true}`,
			check: func(t *testing.T, f *Fake) {
				if !f.Isolated(testEndpt) || f.Effects("isolate", testEndpt) != 1 {
					t.Error("endpoint not isolated")
				}
			},
		},
		{
			name: "restore", action: "gravityzone.restore_endpoint",
			setup: func(t *testing.T, f *Fake, c *Client) {
				if err := c.IsolateEndpoint(context.Background(), testEndpt); err != nil {
					t.Fatal(err)
				}
			},
			in:     actions.Inputs{"endpointId": testEndpt},
			method: "createRestoreEndpointFromIsolationTask",
			params: `{"endpointId": "` + testEndpt + `"}`,
			output: `{"taskCreated": true}`,
			check: func(t *testing.T, f *Fake) {
				if f.Isolated(testEndpt) || f.Effects("restore", testEndpt) != 1 {
					t.Error("endpoint still isolated")
				}
			},
		},
		{
			name: "create the document's detection rule", action: "gravityzone.create_custom_rule",
			in: actions.Inputs{"type": "detection", "companyId": "61827b8036492c2fc0718722", "name": "Detection Rule via API",
				"description": "description test api", "tags": []any{"test", "api", "demo"}, "settings": parseJSON(t, testRuleSrc)},
			method: "createCustomRule",
			params: `{"companyId": "61827b8036492c2fc0718722", "type": 1, "name": "Detection Rule via API", "description": "description test api",
				"tags": ["test", "api", "demo"], "settings": ` + testRuleSrc + `, "returnRuleId": true}`,
			output: `{"created": true, "ruleId": "6372b7a3897aaa77ee021642"}`,
			check: func(t *testing.T, f *Fake) {
				rules := f.CustomRules()
				if len(rules) != 1 || rules[0]["companyId"] != "61827b8036492c2fc0718722" {
					t.Errorf("rules = %v", rules)
				}
			},
		},
		{
			name: "create an exclusion without its id", action: "gravityzone.create_custom_rule",
			in: actions.Inputs{"type": 2, "name": "trusted backup", "returnRuleId": false, "settings": map[string]any{
				"status": 1, "target": "process",
				"criteriaList": []any{map[string]any{"field": "Process.FullPathName", "relation": "is", "value": `C:\backup\agent.exe`}}}},
			method: "createCustomRule",
			params: `{"type": 2, "name": "trusted backup", "returnRuleId": false, "settings": {"status": 1, "target": "process",
				"criteriaList": [{"field": "Process.FullPathName", "relation": "is", "value": "C:\\backup\\agent.exe"}]}}`,
			output: `{"created": true}`,
		},
		{
			name: "list custom rules of one type", action: "gravityzone.get_custom_rules",
			setup: func(t *testing.T, f *Fake, c *Client) {
				f.SetRuleIDShape(RuleIDQuoted)
				if _, err := c.CreateCustomRule(context.Background(), CustomRule{Type: RuleDetection, CompanyID: "61827b8036492c2fc0718722",
					Name: "testApi1111", Description: "description test api", Tags: []string{"test", "api", "demo"}, Settings: ruleSettings(t)}); err != nil {
					t.Fatal(err)
				}
			},
			in:     actions.Inputs{"companyId": "61827b8036492c2fc0718722", "type": "detection", "page": 1, "perPage": 100},
			method: "getCustomRulesList",
			params: `{"companyId": "61827b8036492c2fc0718722", "type": 1, "page": 1, "perPage": 100}`,
			// As the document's sample: values as lists, later criteria joined with AND.
			output: `{"items": [{"id": "6372b7a3897aaa77ee021642", "name": "testApi1111", "ownerId": "6082afe13cf8082cab49cacb",
				"description": "description test api", "companyId": "61827b8036492c2fc0718722", "status": 0, "tags": ["test", "api", "demo"],
				"settings": {"status": 0, "severity": 1, "target": "connection", "criteriaList": [
					{"field": "Connection.DestinationPort", "relation": "is", "value": ["25691"]},
					{"field": "Connection.Process.Name", "relation": "contains", "value": ["./network1"], "operator": "AND"},
					{"field": "Connection.SourcePort", "relation": "any", "value": ["22", "23", "24"], "operator": "AND"}]}}],
				"page": 1, "pagesCount": 1, "perPage": 100, "total": 1}`,
		},
		{
			name: "delete a custom rule", action: "gravityzone.delete_custom_rule",
			setup: func(t *testing.T, f *Fake, c *Client) {
				if _, err := c.CreateCustomRule(context.Background(), CustomRule{Type: RuleDetection, Name: "r", Settings: ruleSettings(t), ReturnRuleID: true}); err != nil {
					t.Fatal(err)
				}
			},
			in:     actions.Inputs{"type": "detection", "ruleId": "6372b7a3897aaa77ee021642"},
			method: "deleteCustomRule",
			params: `{"type": 1, "ruleId": "6372b7a3897aaa77ee021642"}`,
			output: `{"deleted": true}`,
			check: func(t *testing.T, f *Fake) {
				if len(f.CustomRules()) != 0 {
					t.Errorf("rules = %v", f.CustomRules())
				}
			},
		},
		{
			name: "close an incident", action: "gravityzone.change_incident_status",
			in:     actions.Inputs{"type": "incidents", "incidentId": testIncID, "status": "closed"},
			method: "changeIncidentStatus",
			params: `{"type": "incidents", "incidentId": "` + testIncID + `", "status": 3}`,
			output: `{"done": true, "status": 3}`,
			check: func(t *testing.T, f *Fake) {
				if inc, ok := f.Incident("incidents", testIncID); !ok || inc.Status != 3 {
					t.Errorf("incident = %+v", inc)
				}
			},
		},
		{
			name: "an extended incident, status by number", action: "gravityzone.change_incident_status",
			in:     actions.Inputs{"type": "extendedIncidents", "incidentId": testIncID, "status": 4},
			method: "changeIncidentStatus",
			params: `{"type": "extendedIncidents", "incidentId": "` + testIncID + `", "status": 4}`,
			output: `{"done": true, "status": 4}`,
		},
		{
			name: "note", action: "gravityzone.update_incident_note",
			in:     actions.Inputs{"type": "extendedIncidents", "incidentId": "621342db44747b408b7edf65", "note": "A random note"},
			method: "updateIncidentNote",
			params: `{"type": "extendedIncidents", "incidentId": "621342db44747b408b7edf65", "note": "A random note"}`,
			output: `{"done": true, "lastUpdated": "2022-04-04T11:53:21+03:00"}`,
			check: func(t *testing.T, f *Fake) {
				if inc, _ := f.Incident("extendedIncidents", "621342db44747b408b7edf65"); inc.Note != "A random note" {
					t.Errorf("note = %q", inc.Note)
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, base := startFake(t)
			f.SetClock(func() time.Time { return time.Date(2022, 4, 4, 11, 53, 21, 0, time.FixedZone("EEST", 3*3600)) })
			c := newTestClient(t, base)
			if tc.setup != nil {
				tc.setup(t, f, c)
			}
			before := len(f.Requests())
			out, err := actions.Invoke(context.Background(), actionByName(t, c, tc.action), tc.in)
			if err != nil {
				t.Fatal(err)
			}
			reqs := f.Requests()[before:]
			if len(reqs) != 1 {
				t.Fatalf("%d requests, want 1", len(reqs))
			}
			env := envelopeOf(t, reqs[0])
			if env.Method != tc.method || env.JSONRPC != "2.0" {
				t.Errorf("method %q jsonrpc %q, want %q 2.0", env.Method, env.JSONRPC, tc.method)
			}
			if got, want := parseJSON(t, string(env.Params)), parseJSON(t, tc.params); !reflect.DeepEqual(got, want) {
				t.Errorf("params =\n%s\nwant\n%s", env.Params, tc.params)
			}
			if got, want := jsonOf(t, out), parseJSON(t, tc.output); !reflect.DeepEqual(got, want) {
				t.Errorf("output =\n%v\nwant\n%v", got, want)
			}
			if tc.check != nil {
				tc.check(t, f)
			}
		})
	}
}

func TestGetListsAllAction(t *testing.T) {
	t.Parallel()
	f, base := startFake(t)
	for i := range 45 {
		f.AddBlocklistItem(HashSHA256, fmt.Sprintf("%064x", i), "", "seed")
	}
	out, err := actions.Invoke(context.Background(), actionByName(t, newTestClient(t, base), "gravityzone.get_blocklist_items"),
		actions.Inputs{"all": true, "perPage": 20, "page": 1})
	if err != nil {
		t.Fatal(err)
	}
	items, _ := out["items"].([]any)
	if len(items) != 45 || out["pagesCount"] != int64(3) || out["total"] != int64(45) || out["page"] != int64(1) || out["perPage"] != int64(20) {
		t.Errorf("output: %d items, %v", len(items), out)
	}
	if n := len(f.Requests()); n != 3 {
		t.Errorf("%d requests, want 3", n)
	}
}

func TestActionsRejectBadInputsBeforeAnyRequest(t *testing.T) {
	t.Parallel()
	settings := func(mod func(s map[string]any)) map[string]any {
		s := parseJSON(t, testRuleSrc).(map[string]any)
		mod(s)
		return s
	}
	criterion := func(field, relation string, value any) map[string]any {
		return map[string]any{"target": strings.ToLower(strings.SplitN(field, ".", 2)[0]),
			"criteriaList": []any{map[string]any{"field": field, "relation": relation, "value": value}}}
	}
	rule := func(s map[string]any) actions.Inputs {
		return actions.Inputs{"name": "r", "type": "detection", "settings": s}
	}
	cases := []struct {
		action string
		in     actions.Inputs
		want   string
	}{
		{"gravityzone.add_to_blocklist", actions.Inputs{"hashType": "md5", "hashList": testMD5}, `missing required input "sourceInfo"`},
		{"gravityzone.add_to_blocklist", actions.Inputs{"hashType": "sha1", "hashList": testMD5, "sourceInfo": "x"}, `input "hashType" must be one of sha256 (1), md5 (2), got "sha1"`},
		{"gravityzone.add_to_blocklist", actions.Inputs{"hashType": 3, "hashList": testMD5, "sourceInfo": "x"}, `must be one of sha256 (1), md5 (2), got 3`},
		{"gravityzone.add_to_blocklist", actions.Inputs{"hashType": "sha256", "hashList": []any{testSHA256, testMD5}, "sourceInfo": "x"}, `input "hashList": item 1 "` + testMD5 + `" has 32 hex digits; a sha256 hash has 64`},
		{"gravityzone.add_to_blocklist", actions.Inputs{"hashType": "md5", "hashList": []any{"z" + testMD5[1:]}, "sourceInfo": "x"}, `input "hashList": item 0 "z`},
		{"gravityzone.add_to_blocklist", actions.Inputs{"hashType": "md5", "hashList": []any{}, "sourceInfo": "x"}, `input "hashList" must not be empty`},
		{"gravityzone.add_to_blocklist", actions.Inputs{"hashType": "md5", "hashList": testMD5, "sourceInfo": " "}, `input "sourceInfo": must not be empty`},
		{"gravityzone.add_to_blocklist", actions.Inputs{"hashType": "md5", "hashList": testMD5, "sourceInfo": "x", "companyId": "a b"}, `input "companyId": "a b" must not contain whitespace`},
		{"gravityzone.get_blocklist_items", actions.Inputs{"perPage": 101}, `input "perPage" must be between 1 and 100, got 101`},
		{"gravityzone.get_blocklist_items", actions.Inputs{"page": 0}, `input "page" must be between 1 and`},
		{"gravityzone.get_blocklist_items", actions.Inputs{"all": "yes"}, `input "all" must be true or false`},
		{"gravityzone.get_custom_rules", actions.Inputs{"type": "detections"}, `input "type" must be one of detection (1), exclusion (2), got "detections"`},
		{"gravityzone.remove_from_blocklist", actions.Inputs{}, `missing required input "hashItemId"`},
		{"gravityzone.remove_from_blocklist", actions.Inputs{"hashItemId": "a/b"}, `must not contain '/'`},
		{"gravityzone.isolate_endpoint", actions.Inputs{"endpointId": ""}, `input "endpointId": must not be empty`},
		{"gravityzone.isolate_endpoint", actions.Inputs{"endpointId": 12}, `input "endpointId" must be a string`},
		{"gravityzone.restore_endpoint", actions.Inputs{"endpointId": testEndpt, "endpoint": "x"}, `unknown input "endpoint"`},
		{"gravityzone.create_custom_rule", actions.Inputs{"name": "r"}, `missing required input "settings"`},
		{"gravityzone.create_custom_rule", rule(settings(func(s map[string]any) { s["enabled"] = true })), `unknown setting "enabled"`},
		{"gravityzone.create_custom_rule", rule(settings(func(s map[string]any) { delete(s, "target") })), `missing target`},
		{"gravityzone.create_custom_rule", rule(settings(func(s map[string]any) { s["target"] = "network" })), `target must be one of process, file, connection, registry, got "network"`},
		{"gravityzone.create_custom_rule", rule(settings(func(s map[string]any) { s["criteriaList"] = []any{} })), `criteriaList must not be empty`},
		{"gravityzone.create_custom_rule", rule(settings(func(s map[string]any) { s["severity"] = "high" })), `severity must be a whole number`},
		{"gravityzone.create_custom_rule", rule(criterion("Process.Nam", "is", "x")), `unknown field "Process.Nam": fields of target process are Process.Name, `},
		{"gravityzone.create_custom_rule", rule(map[string]any{"target": "file", "criteriaList": []any{map[string]any{"field": "Process.Name", "relation": "is", "value": "x"}}}),
			`criteriaList[0]: field "Process.Name" belongs to target process, not file`},
		{"gravityzone.create_custom_rule", rule(criterion("File.Name", "equals", "x")), `relation must be one of is, contains, any, got "equals"`},
		{"gravityzone.create_custom_rule", rule(criterion("File.Name", "any", "x")), `relation any takes a list of values`},
		{"gravityzone.create_custom_rule", rule(criterion("File.Name", "contains", "")), `value[0] for File.Name: must not be empty`},
		{"gravityzone.create_custom_rule", rule(criterion("File.Name", "is", []any{})), `value must not be an empty list`},
		{"gravityzone.create_custom_rule", rule(criterion("Connection.DestinationPort", "is", []any{"65536"})), `port "65536" is not between 0 and 65535`},
		{"gravityzone.create_custom_rule", rule(criterion("Connection.SourcePort", "any", []any{22, -1})), `port must be a whole number between 0 and 65535, got -1`},
		{"gravityzone.create_custom_rule", rule(criterion("Connection.SourcePort", "is", "2x")), `port "2x" is not a whole number`},
		{"gravityzone.create_custom_rule", rule(criterion("Connection.SourceIP", "is", "10.0.0.300")), `"10.0.0.300" is not a valid IP address`},
		{"gravityzone.create_custom_rule", rule(criterion("Connection.DestinationIP", "any", []any{"10.0.0.1", "10.0.0.0/8"})), `value[1] for Connection.DestinationIP: "10.0.0.0/8" is not a valid IP address`},
		{"gravityzone.create_custom_rule", rule(map[string]any{"target": "file", "criteriaList": []any{map[string]any{"field": "File.Name", "relation": "is", "value": "x", "operator": "AND"}}}),
			`unknown key "operator"`},
		{"gravityzone.create_custom_rule", actions.Inputs{"name": "r", "type": "exclusion", "settings": criterion("Registry.Key", "is", "HKLM")},
			`settings target registry is for detection rules only, not exclusions`},
		{"gravityzone.create_custom_rule", actions.Inputs{"name": "r", "settings": criterion("Registry.Key", "is", "HKLM")},
			`settings target registry is for detection rules only: set type: detection`},
		{"gravityzone.create_custom_rule", actions.Inputs{"name": "r", "type": "exclusion", "settings": parseJSON(t, testRuleSrc)},
			`settings severity applies to detection rules only`},
		{"gravityzone.create_custom_rule", actions.Inputs{"name": "r", "tags": []any{"a", ""}, "settings": parseJSON(t, testRuleSrc)}, `input "tags": item 1 must not be empty`},
		{"gravityzone.delete_custom_rule", actions.Inputs{"ruleId": "r1"}, `missing required input "type"`},
		{"gravityzone.change_incident_status", actions.Inputs{"type": "incidents", "incidentId": testIncID, "status": "reopened"},
			`input "status" must be one of open (1), investigating (2), closed (3), false_positive (4), got "reopened"`},
		{"gravityzone.change_incident_status", actions.Inputs{"type": "incidents", "incidentId": testIncID, "status": 0}, `got 0`},
		{"gravityzone.change_incident_status", actions.Inputs{"type": "incident", "incidentId": testIncID, "status": 1},
			`input "type" must be one of incidents, extendedIncidents, got "incident"`},
		{"gravityzone.update_incident_note", actions.Inputs{"type": "incidents", "incidentId": testIncID, "note": strings.Repeat("x", MaxNoteLen+1)},
			`input "note" must be at most 50000 characters, got 50001`},
		{"gravityzone.update_incident_note", actions.Inputs{"type": "incidents", "incidentId": testIncID}, `missing required input "note"`},
	}
	for _, tc := range cases {
		t.Run(tc.action+"/"+tc.want, func(t *testing.T) {
			t.Parallel()
			f, base := startFake(t)
			_, err := actions.Invoke(context.Background(), actionByName(t, newTestClient(t, base), tc.action), tc.in)
			if err == nil || !actions.IsPermanent(err) || actions.ReasonOf(err) != actions.ReasonInvalidInput || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want invalid input containing %q", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), tc.action+": invalid inputs: ") {
				t.Errorf("error %q does not name the action", err)
			}
			if n := len(f.Requests()); n != 0 {
				t.Errorf("fake saw %d requests", n)
			}
		})
	}
}

// The documents' settings that must pass, so the checks are not stricter than the table.
func TestRuleSettingsAccepted(t *testing.T) {
	t.Parallel()
	cases := []struct {
		ruleType int64
		settings string
	}{
		{RuleDetection, testRuleSrc},
		{RuleDetection, `{"target": "registry", "severity": 2, "criteriaList": [{"field": "Registry.Key", "relation": "contains", "value": "Run"}]}`},
		{RuleExclusion, `{"status": 0, "target": "file", "criteriaList": [{"field": "File.CreatedBy.CommandLine", "relation": "any", "value": ["a", "b"]}]}`},
		{RuleExclusion, `{"target": "connection", "criteriaList": [{"field": "Connection.SourceIP", "relation": "is", "value": "2001:db8::1"},
			{"field": "Connection.DestinationPort", "relation": "any", "value": [0, 65535, "443"]}]}`},
		{0, `{"target": "process", "criteriaList": [{"field": "Process.Parent.CommandLine", "relation": "contains", "value": ["-enc"]}]}`},
	}
	for i, tc := range cases {
		var s map[string]any
		if err := json.Unmarshal([]byte(tc.settings), &s); err != nil {
			t.Fatal(err)
		}
		if err := checkRuleSettings(s, tc.ruleType); err != nil {
			t.Errorf("case %d: %v", i, err)
		}
	}
}

// loadPlaybook writes one playbook into a directory of its own and loads it with the vendor's
// catalogue, as the worker does at start-up.
func loadPlaybook(t *testing.T, yaml string) error {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "pb.yaml"), []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cat, err := actions.NewCatalogue(Vendor().Specs...)
	if err != nil {
		t.Fatal(err)
	}
	_, err = playbook.LoadDir(dir, cat)
	return err
}

func TestPlaybookLoad(t *testing.T) {
	t.Parallel()
	const head = "name: gz\non: [soar.alerts.gravityzone.*]\nsteps:\n"
	cases := []struct {
		name  string
		steps string
		want  []string // substrings of the problems; none: the playbook loads
	}{
		{"every action", `
  - id: block
    action: gravityzone.add_to_blocklist
    with: {hashType: md5, hashList: ["` + testMD5 + `"], sourceInfo: "riposte ${{ alert_id }}"}
  - id: list
    action: gravityzone.get_blocklist_items
    with: {all: true, perPage: 100}
  - id: unblock
    action: gravityzone.remove_from_blocklist
    with: {hashItemId: "${{ steps.list.output.items[0].id }}"}
  - id: isolate
    action: gravityzone.isolate_endpoint
    with: {endpointId: "${{ alert.endpointId }}"}
  - id: restore
    action: gravityzone.restore_endpoint
    with: {endpointId: "${{ alert.endpointId }}"}
  - id: rule
    action: gravityzone.create_custom_rule
    with:
      type: detection
      name: block c2
      tags: [riposte]
      settings:
        status: 0
        severity: 1
        target: connection
        criteriaList:
          - {field: Connection.DestinationIP, relation: any, value: ["203.0.113.7", "${{ alert.ip }}"]}
          - {field: Connection.DestinationPort, relation: is, value: 443}
  - id: rules
    action: gravityzone.get_custom_rules
    with: {type: exclusion}
  - id: unrule
    action: gravityzone.delete_custom_rule
    with: {type: 1, ruleId: "${{ steps.rule.output.ruleId }}"}
  - id: close
    action: gravityzone.change_incident_status
    with: {type: incidents, incidentId: "${{ alert.incidentId }}", status: false_positive}
  - id: note
    action: gravityzone.update_incident_note
    with: {type: extendedIncidents, incidentId: "${{ alert.incidentId }}", note: "closed by riposte"}
`, nil},
		{"status reopened", `
  - id: close
    action: gravityzone.change_incident_status
    with: {type: incidents, incidentId: "${{ alert.incidentId }}", status: reopened}
`, []string{`pb.yaml:6: step "close": input "status" must be one of open (1), investigating (2), closed (3), false_positive (4), got "reopened"`}},
		{"incident type", `
  - id: note
    action: gravityzone.update_incident_note
    with: {type: incident, incidentId: x, note: n}
`, []string{`pb.yaml:6: step "note": input "type" must be one of incidents, extendedIncidents, got "incident"`}},
		{"hash of the wrong length", `
  - id: block
    action: gravityzone.add_to_blocklist
    with: {hashType: sha256, hashList: ["` + testMD5 + `"], sourceInfo: x}
`, []string{`pb.yaml:6: step "block": input "hashList": item 0 "` + testMD5 + `" has 32 hex digits; a sha256 hash has 64`}},
		{"hash not hex", `
  - id: block
    action: gravityzone.add_to_blocklist
    with: {hashType: md5, hashList: ["not-a-hash"], sourceInfo: x}
`, []string{`step "block": input "hashList": item 0 "not-a-hash" is not hexadecimal`}},
		{"perPage and page", `
  - id: list
    action: gravityzone.get_custom_rules
    with: {perPage: 500, page: 0, type: detections}
`, []string{`input "perPage" must be between 1 and 100, got 500`, `input "page" must be between 1 and`, `input "type" must be one of detection (1), exclusion (2), got "detections"`}},
		{"exclusion on the registry", `
  - id: rule
    action: gravityzone.create_custom_rule
    with:
      type: exclusion
      name: r
      settings: {target: registry, criteriaList: [{field: Registry.Value, relation: is, value: x}]}
`, []string{`pb.yaml:6: step "rule": settings target registry is for detection rules only, not exclusions`}},
		{"bad criterion in a rule", `
  - id: rule
    action: gravityzone.create_custom_rule
    with:
      name: r
      settings: {target: connection, criteriaList: [{field: Connection.SourcePort, relation: any, value: "22"}]}
`, []string{`step "rule": input "settings": criteriaList[0]: relation any takes a list of values, got "22"`}},
		{"note too long", `
  - id: note
    action: gravityzone.update_incident_note
    with: {type: incidents, incidentId: x, note: "` + strings.Repeat("n", MaxNoteLen+1) + `"}
`, []string{`input "note" must be at most 50000 characters`}},
		{"missing inputs", `
  - id: isolate
    action: gravityzone.isolate_endpoint
    with: {endpoint: x}
`, []string{`action gravityzone.isolate_endpoint has no input "endpoint"; did you mean "endpointId"?`, `missing required input "endpointId"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := loadPlaybook(t, head+strings.TrimPrefix(tc.steps, "\n"))
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("load: %v", err)
				}
				return
			}
			var probs playbook.Problems
			if !errors.As(err, &probs) {
				t.Fatalf("load error = %v, want playbook problems", err)
			}
			if len(probs) != len(tc.want) {
				t.Errorf("problems:\n%v\nwant %d", err, len(tc.want))
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("problems:\n%v\nlack %q", err, w)
				}
			}
		})
	}
}

func TestVendorConfigure(t *testing.T) {
	t.Parallel()
	v := Vendor()
	_, _, err := v.Configure(actions.Settings{EnvBaseURL: "cloud.gravityzone.bitdefender.com/api"}, actions.Deps{})
	if err == nil {
		t.Fatal("got no error")
	}
	for _, want := range []string{"GZ_API_KEY not set", "GZ_BASE_URL: GravityZone access URL \"cloud.gravityzone.bitdefender.com/api\" must be an absolute http or https URL"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	_, _, err = v.Configure(actions.Settings{}, actions.Deps{})
	if err == nil || !strings.Contains(err.Error(), "GZ_BASE_URL, GZ_API_KEY not set") {
		t.Errorf("error = %v", err)
	}
	_, _, err = v.Configure(actions.Settings{EnvBaseURL: "https://h/api", EnvAPIKey: "k", EnvRateLimit: "fast"}, actions.Deps{})
	if err == nil || !strings.Contains(err.Error(), `"fast" is not a rate limit`) {
		t.Errorf("error = %v", err)
	}
	_, _, err = v.Configure(actions.Settings{EnvBaseURL: "https://h/api", EnvAPIKey: "sec ret"}, actions.Deps{})
	if err == nil || !strings.Contains(err.Error(), "GZ_API_KEY: holds whitespace") || strings.Contains(err.Error(), "sec ret") {
		t.Errorf("error = %v", err)
	}
	inst, limit, err := v.Configure(actions.Settings{EnvBaseURL: "https://cloud.gravityzone.bitdefender.com/api", EnvAPIKey: "k"}, actions.Deps{})
	if err != nil || limit != 10 || len(inst.Actions) != len(v.Specs) {
		t.Errorf("configure: %v, limit %v", err, limit)
	}
	if _, limit, _ := v.Configure(actions.Settings{EnvBaseURL: "https://h/api", EnvAPIKey: "k", EnvRateLimit: "0"}, actions.Deps{}); limit != 0 {
		t.Errorf("limit = %v, want 0", limit)
	}
	key, _ := v.Var(EnvAPIKey)
	if !key.Secret || !key.Required {
		t.Errorf("GZ_API_KEY = %+v", key)
	}
}

func TestSimulate(t *testing.T) {
	t.Parallel()
	v := Vendor()
	s, stop, err := v.Simulate()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	if !strings.HasSuffix(s[EnvBaseURL], FakeBasePath) {
		t.Errorf("simulated base URL %q", s[EnvBaseURL])
	}
	inst, limit, err := v.Configure(s, actions.Deps{Log: zaptest.NewLogger(t), UserAgent: "riposte/sim"})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := actions.NewRegistry(inst.Actions...)
	if err != nil {
		t.Fatal(err)
	}
	d := actions.NewDispatcher(zaptest.NewLogger(t), actions.WithRateLimit(v.Name, limit))
	isolate, _ := reg.Lookup("gravityzone.isolate_endpoint")
	res := d.Run(context.Background(), isolate, actions.Inputs{"endpointId": testEndpt}, actions.RetryPolicy{MaxAttempts: 1})
	if res.Err != nil || res.Output["taskCreated"] != true {
		t.Fatalf("result = %+v", res)
	}
	rule, _ := reg.Lookup("gravityzone.create_custom_rule")
	res = d.Run(context.Background(), rule, actions.Inputs{"name": "sim", "type": "detection", "settings": parseJSON(t, testRuleSrc)}, actions.RetryPolicy{MaxAttempts: 1})
	if res.Err != nil || res.Output["ruleId"] != "6372b7a3897aaa77ee021642" {
		t.Fatalf("result = %+v", res)
	}
}

// Through the dispatcher: a retryable vendor failure is retried, a permanent one is not.
func TestActionsUnderDispatcher(t *testing.T) {
	t.Parallel()
	policy := actions.RetryPolicy{MaxAttempts: 3, InitialInterval: time.Millisecond, MaxInterval: time.Millisecond}
	cases := []struct {
		name      string
		failure   Failure
		attempts  int
		succeeded bool
	}{
		{"server error then success", Failure{Code: -32000, Message: "Server error", Details: "busy"}, 2, true},
		{"HTTP 503 then success", Failure{Status: 503}, 2, true},
		{"invalid params stop at once", Failure{Code: -32602, Message: "Invalid params", Details: "incidentId"}, 1, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, base := startFake(t)
			f.Inject("changeIncidentStatus", 1, tc.failure)
			d := actions.NewDispatcher(zaptest.NewLogger(t), actions.WithJitterSource(func() float64 { return 0 }))
			res := d.Run(context.Background(), actionByName(t, newTestClient(t, base), "gravityzone.change_incident_status"),
				actions.Inputs{"type": "incidents", "incidentId": testIncID, "status": "closed"}, policy)
			if res.Attempts != tc.attempts || (res.Err == nil) != tc.succeeded {
				t.Errorf("attempts %d, err %v", res.Attempts, res.Err)
			}
			if !tc.succeeded && (res.Retryable || !strings.Contains(res.Err.Error(), "Invalid params: incidentId")) {
				t.Errorf("result = %+v", res)
			}
		})
	}
}

// 20 goroutines make 60 calls through one dispatcher limited to the service's 10 a second: the
// fake, which refuses the 11th request in any second, never has to.
func TestRateLimitKeepsUnderTheServiceLimit(t *testing.T) {
	t.Parallel()
	f := NewFake(testAPIKey) // the service's gate: 10 a second
	base, stop := f.Start()
	t.Cleanup(stop)
	for i := range 30 {
		f.AddBlocklistItem(HashMD5, fmt.Sprintf("%032x", i), "", "seed")
	}
	v := Vendor()
	inst, limit, err := v.Configure(actions.Settings{EnvBaseURL: base, EnvAPIKey: testAPIKey}, actions.Deps{Log: zaptest.NewLogger(t)})
	if err != nil || limit != 10 {
		t.Fatalf("configure: %v, rate limit %v; want GZ_RATE_LIMIT's default of 10", err, limit)
	}
	reg, err := actions.NewRegistry(inst.Actions...)
	if err != nil {
		t.Fatal(err)
	}
	d := actions.NewDispatcher(zaptest.NewLogger(t), actions.WithRateLimit(v.Name, limit))
	calls := []struct {
		action   string
		in       actions.Inputs
		requests int
	}{
		{"gravityzone.isolate_endpoint", actions.Inputs{"endpointId": testEndpt}, 1},
		{"gravityzone.change_incident_status", actions.Inputs{"type": "incidents", "incidentId": testIncID, "status": "investigating"}, 1},
		// Two pages: the second request is paced inside the attempt.
		{"gravityzone.get_blocklist_items", actions.Inputs{"all": true, "perPage": 20}, 2},
	}
	const total = 60
	work := make(chan int, total)
	for i := range total {
		work <- i
	}
	close(work)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		failures []error
		attempts int
	)
	wantRequests := 0
	for i := range total {
		wantRequests += calls[i%len(calls)].requests
	}
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				c := calls[i%len(calls)]
				a, _ := reg.Lookup(c.action)
				res := d.Run(context.Background(), a, c.in, actions.RetryPolicy{MaxAttempts: 3, AttemptTimeout: 30 * time.Second})
				mu.Lock()
				attempts += res.Attempts
				if res.Err != nil {
					failures = append(failures, res.Err)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(failures) > 0 {
		t.Errorf("%d of %d calls failed, first: %v", len(failures), total, failures[0])
	}
	if attempts != total {
		t.Errorf("%d attempts for %d calls: some were retried", attempts, total)
	}
	if n := f.RateLimited(); n != 0 {
		t.Errorf("the fake answered 429 %d times", n)
	}
	if peak := f.PeakRate(); peak > fakeRateLimit || peak < fakeRateLimit/2 {
		t.Errorf("peak rate %d a second, want at most %d (and near it: the calls were concurrent)", peak, fakeRateLimit)
	}
	if n := len(f.Requests()); n != wantRequests {
		t.Errorf("fake saw %d requests, want %d", n, wantRequests)
	}
}
