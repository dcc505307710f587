package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/riposte-soar/riposte/internal/actions"
	"github.com/riposte-soar/riposte/internal/actions/checkpoint"
	"github.com/riposte-soar/riposte/internal/actions/cyberark"
	"github.com/riposte-soar/riposte/internal/actions/gravityzone"
	"github.com/riposte-soar/riposte/internal/actions/natspub"
	"github.com/riposte-soar/riposte/internal/actions/vendorhttp"
	"github.com/riposte-soar/riposte/internal/playbook"
)

// vendorList is every vendor riposte knows. Adding a vendor is its package and one line here:
// the catalogue, the start-up check of its variables, --simulate and the docs follow from its
// declaration.
func vendorList() []actions.Vendor {
	return []actions.Vendor{
		checkpoint.Vendor(),
		gravityzone.Vendor(),
		cyberark.Vendor(),
		natspub.Vendor(),
	}
}

// catalogue is every action riposte knows, for checking playbooks and printing the catalogue.
func catalogue() *actions.Catalogue {
	var specs []actions.Spec
	for _, v := range vendorList() {
		specs = append(specs, v.Specs...)
	}
	cat, err := actions.NewCatalogue(specs...)
	if err != nil {
		panic(fmt.Sprintf("action catalogue: %v", err)) // two vendors claiming one name is a build bug
	}
	return cat
}

// vendors holds the configured vendors the playbooks use: their runnable actions, their rate
// limits, and what to end at shutdown.
type vendors struct {
	maxInFlight int                        // sizes each vendor's idle connections
	requests    vendorhttp.RequestObserver // hears every vendor request; nil: none
	registry    *actions.Registry
	limits      map[string]float64 // vendor → requests per second; 0: none
	sessions    []func(context.Context) error
	stops       []func() // fakes started for --simulate
}

// close ends the vendors' sessions (PVWA logs off), then stops any fakes.
func (v *vendors) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, end := range v.sessions {
		_ = end(ctx)
	}
	v.sessions = nil
	for _, stop := range v.stops {
		stop()
	}
	v.stops = nil
}

// bind gives the actions that publish on NATS (nats.publish) the worker's connection.
func (v *vendors) bind(nc *nats.Conn) error {
	for _, a := range v.registry.Actions() {
		if b, ok := a.(interface{ Bind(*nats.Conn) error }); ok {
			if err := b.Bind(nc); err != nil {
				return err
			}
		}
	}
	return nil
}

// dispatcherOptions are the vendors' rate limits and guards, for the dispatcher that runs their
// actions.
func (v *vendors) dispatcherOptions(guard actions.GuardSettings) []actions.DispatcherOption {
	var opts []actions.DispatcherOption
	for _, name := range v.names() {
		opts = append(opts, actions.WithRateLimit(name, v.limits[name]), actions.WithGuard(name, guard))
	}
	return opts
}

// names lists the configured vendors.
func (v *vendors) names() []string { return sortedKeys(v.limits) }

// newVendors configures every vendor a playbook uses, from the environment or, with simulate,
// as its in-process fake. Every missing or malformed variable is reported at once, per vendor,
// with the playbooks that need it.
func newVendors(pbs []*playbook.Playbook, simulate bool, env func(string) (string, error), deps actions.Deps, maxInFlight int, requests vendorhttp.RequestObserver) (*vendors, error) {
	users := map[string][]string{} // vendor → playbooks
	for _, pb := range pbs {
		for _, vendor := range pb.Vendors() {
			users[vendor] = append(users[vendor], pb.Name)
		}
	}
	reg, _ := actions.NewRegistry()
	v := &vendors{registry: reg, limits: map[string]float64{}, maxInFlight: maxInFlight, requests: requests}
	var problems []string
	known := map[string]bool{}
	for _, vendor := range vendorList() {
		known[vendor.Name] = true
		pbNames, used := users[vendor.Name]
		if !used {
			continue
		}
		inst, limit, err := v.configure(vendor, simulate, env, deps)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s (used by %s): %s", vendor.Name, strings.Join(pbNames, ", "),
				strings.ReplaceAll(err.Error(), "\n", "; ")))
			continue
		}
		if inst.Close != nil {
			v.sessions = append(v.sessions, inst.Close)
		}
		v.limits[vendor.Name] = limit
		for _, a := range inst.Actions {
			if err := reg.Add(a); err != nil {
				problems = append(problems, err.Error())
			}
		}
	}
	for _, name := range sortedKeys(users) {
		if !known[name] {
			problems = append(problems, fmt.Sprintf("%s (used by %s): no client for this vendor", name, strings.Join(users[name], ", ")))
		}
	}
	if len(problems) > 0 {
		v.close()
		return nil, fmt.Errorf("vendor configuration:\n  %s\n(see docs/configuration.md; --simulate runs every vendor as its built-in fake)", strings.Join(problems, "\n  "))
	}
	return v, nil
}

func (v *vendors) configure(vendor actions.Vendor, simulate bool, env func(string) (string, error), deps actions.Deps) (*actions.Instance, float64, error) {
	var s actions.Settings
	if simulate && vendor.Simulate != nil {
		fake, stop, err := vendor.Simulate()
		if err != nil {
			return nil, 0, fmt.Errorf("start the simulated %s: %w", vendor.Title, err)
		}
		v.stops = append(v.stops, stop)
		s = fake
	} else {
		var err error
		if s, err = readSettings(vendor, env); err != nil {
			return nil, 0, err
		}
	}
	if deps.Log == nil {
		deps.Log = zap.NewNop()
	}
	if deps.HTTP == nil {
		// Checked by Configure too, with every other variable; here only to build the client.
		if hc, err := vendorhttp.NewHTTPClient(vendor, s, v.maxInFlight, v.requests); err == nil {
			deps.HTTP = hc
		}
	}
	return vendor.Configure(s, deps)
}

// readSettings reads a vendor's declared variables, each also from the file NAME_FILE names.
// A secret is taken as it is (a password may begin or end with a space); other values are
// trimmed.
func readSettings(vendor actions.Vendor, env func(string) (string, error)) (actions.Settings, error) {
	s := make(actions.Settings, len(vendor.Vars))
	for _, decl := range vendor.Vars {
		val, err := env(decl.Name)
		if err != nil {
			return nil, err
		}
		if !decl.Secret {
			val = strings.TrimSpace(val)
		}
		s[decl.Name] = val
	}
	return s, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
