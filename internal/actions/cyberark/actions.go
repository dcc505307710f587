package cyberark

import (
	"context"

	"github.com/riposte-soar/riposte/internal/actions"
	"github.com/riposte-soar/riposte/internal/actions/vendorhttp"
)

const vendor = "cyberark"

// The environment variables the worker reads for PTA through PVWA.
const (
	EnvBaseURL    = "PVWA_BASE_URL"
	EnvUsername   = "PVWA_USERNAME"
	EnvPassword   = "PVWA_PASSWORD"
	EnvAuthMethod = "PVWA_AUTH_METHOD"
	EnvCACert     = "PVWA_CA_CERT"
	EnvRateLimit  = "PVWA_RATE_LIMIT"
)

// Vendor declares PTA through PVWA to the worker: its variables, its actions, its client and its
// fake.
func Vendor() actions.Vendor {
	return actions.Vendor{
		Name:  vendor,
		Title: "CyberArk Privileged Threat Analytics (PTA) through PVWA",
		Vars: []actions.Var{
			{Name: EnvBaseURL, Required: true,
				Doc:   "the PVWA server, e.g. https://pvwa.example.com (a trailing /PasswordVault is tolerated)",
				Check: func(v string) error { _, err := pvwaURL(v); return err }},
			{Name: EnvUsername, Required: true, Doc: "the Vault user riposte logs on as; it must be allowed to manage PTA security events"},
			{Name: EnvPassword, Required: true, Secret: true, Doc: "that user's password"},
			{Name: EnvAuthMethod, Default: defaultAuth,
				Doc:   "how PVWA checks the password: CyberArk, LDAP, RADIUS or Windows (any case)",
				Check: func(v string) error { _, err := authMethod(v); return err }},
			actions.RateVar(EnvRateLimit, "0"),
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
	c, err := NewClient(Config{
		BaseURL: s[EnvBaseURL], Username: s[EnvUsername], Password: s[EnvPassword], AuthMethod: s[EnvAuthMethod],
		HTTPClient: d.HTTP, UserAgent: d.UserAgent,
	}, d.Log.Named(vendor))
	if err != nil {
		return nil, err
	}
	return &actions.Instance{Actions: actions.Bind(c, defs()), Close: c.Logoff}, nil
}

// simulate serves a fake PVWA that makes up an open event for any id it is asked about, so
// alerts that name events it never saw still run.
func simulate() (actions.Settings, func(), error) {
	const user, password = "riposte-simulate", "riposte-simulate-password"
	f := NewFake(user, password)
	f.SetSynthesize(true)
	f.KeepLast(vendorhttp.SimulateHistory)
	url, stop := f.Start()
	return actions.Settings{EnvBaseURL: url, EnvUsername: user, EnvPassword: password, EnvAuthMethod: defaultAuth}, stop, nil
}

func defs() []actions.Def[*Client] {
	return []actions.Def[*Client]{
		statusAction("close_event", StatusClosed,
			"Close a PTA security event through PVWA: PATCH /PasswordVault/API/pta/API/Events/{eventId}/ with mStatus CLOSED. "+
				"Fails if PVWA answers the event in another state."),
		statusAction("reopen_event", StatusOpen,
			"Reopen a PTA security event through PVWA: PATCH /PasswordVault/API/pta/API/Events/{eventId}/ with mStatus OPEN. "+
				"Fails if PVWA answers the event in another state."),
	}
}

// statusAction declares cyberark.<name>, which sets one event's status to st.
func statusAction(name string, st Status, doc string) actions.Def[*Client] {
	return actions.Def[*Client]{
		Spec: actions.Spec{
			Name:   vendor + "." + name,
			Vendor: vendor,
			Doc:    doc,
			Inputs: []actions.Input{{
				Name: "eventId", Type: actions.String, Required: true,
				Doc: "the PTA security event id; PVWA's URL rules apply: no spaces, none of + & %, no '/', " +
					"only letters, digits and - . _ ~ $ : = @",
				Verify: func(v any) error { return checkURLValue(v.(string)) },
			}},
			Output: "the event as PVWA answers it (`id`, `type`, `score`, `createTime`, `lastUpdateTime`, `audits`, …) with " +
				"`mStatus` in lower case: `\"" + string(st) + "\"`.",
			// Setting a state: doing it twice leaves the event as once.
			Idempotent: true,
		},
		Run: func(ctx context.Context, c *Client, in actions.Inputs) (actions.Output, error) {
			return c.SetEventStatus(ctx, in.String("eventId"), st)
		},
	}
}
