package actions

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"

	"go.uber.org/zap"
)

// Var is one environment variable a vendor reads.
type Var struct {
	Name     string
	Required bool
	// Secret values may also come from the file NAME_FILE names, and are never logged.
	Secret  bool
	Default string // what applies when it is unset, for the docs ("" when nothing does)
	Doc     string
	// Check says what is wrong with a value that is set; nil accepts any.
	Check func(v string) error
}

// Settings are a vendor's variables as read from the environment, secrets resolved from their
// files, unset ones absent or empty.
type Settings map[string]string

// Deps is what the worker lends every vendor client.
type Deps struct {
	Log *zap.Logger
	// HTTP is the client for vendor requests; nil means one with a 30 s timeout.
	HTTP      *http.Client
	UserAgent string // e.g. riposte/1.2.0
}

// Instance is a vendor configured for use: its runnable actions and how to end its session.
type Instance struct {
	Actions []Action
	// Close ends what the client holds at the vendor (PVWA logs off), once, at shutdown; nil
	// when there is nothing to end.
	Close func(ctx context.Context) error
}

// Vendor is what a vendor package declares about itself, so that the worker wires every vendor
// the same way: the catalogue, the start-up check of its variables, its client, and its fake
// for --simulate.
type Vendor struct {
	Name  string // the prefix of its action names and their Spec.Vendor: "gravityzone"
	Title string // e.g. "Bitdefender GravityZone"
	Vars  []Var
	// RateLimitVar names the Var holding the client-side limit in requests per second (0: none);
	// "" when the vendor has none.
	RateLimitVar string
	// CAVar names the Var holding the path of a PEM file of CA certificates to trust for the
	// vendor, beside the system's (a TLS-inspecting proxy, an on-premises PVWA); "" for none.
	CAVar string
	Specs []Spec
	// Open builds the vendor's actions from settings that Configure has checked.
	Open func(s Settings, d Deps) (*Instance, error)
	// Simulate starts the vendor's strict fake in the process and returns the settings that point
	// Open at it, and how to stop it. Nil: the vendor is real even when simulating (nats).
	Simulate func() (Settings, func(), error)
}

// Var returns the declaration of the named variable.
func (v Vendor) Var(name string) (Var, bool) {
	for _, d := range v.Vars {
		if d.Name == name {
			return d, true
		}
	}
	return Var{}, false
}

// Configure checks s against the declared variables, reporting every missing and every
// malformed one at once, then opens the vendor. It returns the rate limit too, for the
// dispatcher.
func (v Vendor) Configure(s Settings, d Deps) (*Instance, float64, error) {
	var missing []string
	var errs []error
	for _, decl := range v.Vars {
		val := strings.TrimSpace(s[decl.Name])
		switch {
		case val == "" && decl.Required:
			missing = append(missing, decl.Name)
		case val != "" && decl.Check != nil:
			if err := decl.Check(val); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", decl.Name, err))
			}
		}
	}
	if len(missing) > 0 {
		errs = append([]error{fmt.Errorf("%s not set", strings.Join(missing, ", "))}, errs...)
	}
	limit, err := v.RateLimit(s)
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, 0, errors.Join(errs...)
	}
	if d.Log == nil {
		d.Log = zap.NewNop()
	}
	inst, err := v.Open(s, d)
	if err != nil {
		return nil, 0, err
	}
	return inst, limit, nil
}

// RateLimit reads the vendor's rate limit: its variable when set, else the variable's Default.
func (v Vendor) RateLimit(s Settings) (float64, error) {
	if v.RateLimitVar == "" {
		return 0, nil
	}
	raw := strings.TrimSpace(s[v.RateLimitVar])
	if raw == "" {
		decl, _ := v.Var(v.RateLimitVar)
		raw = decl.Default
	}
	if raw == "" {
		return 0, nil
	}
	return ParseRate(raw)
}

// RateVar declares a vendor's rate-limit variable with its default.
func RateVar(name, def string) Var {
	return Var{
		Name: name, Default: def,
		Doc:   "client-side limit on requests per second to the vendor from this worker process; 0 for none",
		Check: func(v string) error { _, err := ParseRate(v); return err },
	}
}

// CAVar declares a vendor's CA-certificate variable.
func CAVar(name string) Var {
	return Var{
		Name: name,
		Doc:  "path of a PEM file of CA certificates to trust for this vendor, beside the system's (a TLS-inspecting proxy, a private CA)",
		Check: func(v string) error {
			b, err := os.ReadFile(v)
			if err != nil {
				return fmt.Errorf("read CA certificates: %w", err)
			}
			if !x509.NewCertPool().AppendCertsFromPEM(b) {
				return fmt.Errorf("%s holds no PEM certificate", v)
			}
			return nil
		},
	}
}

// ParseRate reads a rate limit in requests per second: a non-negative number, 0 for none.
func ParseRate(raw string) (float64, error) {
	f, err := strconv.ParseFloat(strings.TrimSpace(raw), 64)
	if err != nil || f < 0 || f != f || f > 1e6 {
		return 0, fmt.Errorf("%q is not a rate limit: give requests per second, e.g. 10 or 0.5, or 0 for none", raw)
	}
	return f, nil
}

// Def is one action of a vendor whose calls go through a client of type C: its declaration
// and its call, written once and bound to a client when the vendor is configured.
type Def[C any] struct {
	Spec Spec
	Run  func(ctx context.Context, c C, in Inputs) (Output, error)
}

// SpecsOf lists the declarations of defs, for the catalogue.
func SpecsOf[C any](defs []Def[C]) []Spec {
	specs := make([]Spec, len(defs))
	for i, d := range defs {
		specs[i] = d.Spec
	}
	return specs
}

// Bind makes defs runnable against c.
func Bind[C any](c C, defs []Def[C]) []Action {
	as := make([]Action, len(defs))
	for i, d := range defs {
		as[i] = bound[C]{def: d, c: c}
	}
	return as
}

type bound[C any] struct {
	def Def[C]
	c   C
}

func (b bound[C]) Spec() Spec { return b.def.Spec }

func (b bound[C]) Run(ctx context.Context, in Inputs) (Output, error) {
	return b.def.Run(ctx, b.c, in)
}
