package main

import (
	"fmt"
	"sort"
	"strings"

	"go.uber.org/zap"

	"github.com/riposte-soar/riposte/internal/actions"
	"github.com/riposte-soar/riposte/internal/actions/checkpoint"
	"github.com/riposte-soar/riposte/internal/actions/natspub"
	"github.com/riposte-soar/riposte/internal/playbook"
)

// catalogue is every action riposte knows, for checking playbooks. Its actions have no client
// behind them and must never run.
func catalogue() *actions.Registry {
	reg, err := actions.NewRegistry(append(checkpoint.Actions(nil), natspub.New())...)
	if err != nil {
		panic(fmt.Sprintf("action catalogue: %v", err)) // two vendors claiming one name is a build bug
	}
	return reg
}

// vendors holds the clients of the vendors the playbooks use, and their registry of runnable
// actions.
type vendors struct {
	registry *actions.Registry
	closers  []func()
	// publish is nats.publish when a playbook uses it: it needs the worker's connection.
	publish *natspub.Action
}

func (v *vendors) close() {
	for _, c := range v.closers {
		c()
	}
	v.closers = nil
}

// newVendors configures every vendor a playbook uses, from the environment or, with simulate,
// as its in-process fake. Missing variables are reported together, per vendor, with the
// playbooks that need them.
func newVendors(pbs []*playbook.Playbook, simulate bool, env func(string) (string, error), log *zap.Logger) (*vendors, error) {
	users := map[string][]string{} // vendor → playbooks
	for _, pb := range pbs {
		for _, vendor := range pb.Vendors() {
			users[vendor] = append(users[vendor], pb.Name)
		}
	}
	v := &vendors{}
	reg, _ := actions.NewRegistry()
	v.registry = reg
	var problems []string
	for _, vendor := range sortedKeys(users) {
		var (
			acts []actions.Action
			err  error
		)
		switch vendor {
		case "checkpoint":
			acts, err = v.checkpoint(simulate, env, log)
		case "nats":
			v.publish = natspub.New()
			acts = []actions.Action{v.publish}
		default:
			err = fmt.Errorf("no client for vendor %q", vendor)
		}
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s (used by %s): %v", vendor, strings.Join(users[vendor], ", "), err))
			continue
		}
		for _, a := range acts {
			if err := reg.Add(a); err != nil {
				problems = append(problems, err.Error())
			}
		}
	}
	if len(problems) > 0 {
		v.close()
		return nil, fmt.Errorf("vendor configuration:\n  %s\n(see docs/configuration.md; --simulate runs every vendor as its built-in fake)", strings.Join(problems, "\n  "))
	}
	return v, nil
}

func (v *vendors) checkpoint(simulate bool, env func(string) (string, error), log *zap.Logger) ([]actions.Action, error) {
	var cfg checkpoint.Config
	if simulate {
		fake := checkpoint.NewFake("riposte-simulate", "riposte-simulate-key")
		fake.SetSynthesize(true)
		url, stop := fake.Start()
		v.closers = append(v.closers, stop)
		cfg = checkpoint.Config{BaseURL: url, ClientID: "riposte-simulate", AccessKey: "riposte-simulate-key"}
	} else {
		vals, err := readEnv(env, "HEC_BASE_URL", "HEC_REGION", "HEC_CLIENT_ID", "HEC_ACCESS_KEY")
		if err != nil {
			return nil, err
		}
		if missing := missingVars(vals, "HEC_CLIENT_ID", "HEC_ACCESS_KEY"); missing != "" {
			return nil, fmt.Errorf("%s not set", missing)
		}
		cfg = checkpoint.Config{BaseURL: vals["HEC_BASE_URL"], ClientID: vals["HEC_CLIENT_ID"], AccessKey: vals["HEC_ACCESS_KEY"]}
		if cfg.BaseURL == "" {
			if cfg.BaseURL, err = checkpoint.GatewayURL(vals["HEC_REGION"]); err != nil {
				return nil, fmt.Errorf("HEC_REGION: %w", err)
			}
		}
	}
	c, err := checkpoint.NewClient(cfg, log.Named("checkpoint"))
	if err != nil {
		return nil, err
	}
	return checkpoint.Actions(c), nil
}

func readEnv(env func(string) (string, error), names ...string) (map[string]string, error) {
	vals := make(map[string]string, len(names))
	for _, n := range names {
		v, err := env(n)
		if err != nil {
			return nil, err
		}
		vals[n] = strings.TrimSpace(v)
	}
	return vals, nil
}

func missingVars(vals map[string]string, required ...string) string {
	var missing []string
	for _, n := range required {
		if vals[n] == "" {
			missing = append(missing, n)
		}
	}
	return strings.Join(missing, ", ")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
