package main

import (
	"slices"
	"testing"

	"github.com/riposte-soar/riposte/internal/actions/checkpoint"
	"github.com/riposte-soar/riposte/internal/actions/cyberark"
	"github.com/riposte-soar/riposte/internal/actions/gravityzone"
)

const (
	testClientID   = "test-client"
	testAccessKey  = "test-access-key-s3cret"
	testGZKey      = "test-gz-api-key-s3cret"
	testPVWAUser   = "svc-riposte"
	testPVWASecret = "test-pvwa-passw0rd-s3cret"
)

// fakeVendors are the three vendors' strict fakes, started for one test, and the environment
// that points a worker at them.
type fakeVendors struct {
	hec *checkpoint.Fake
	gz  *gravityzone.Fake
	pta *cyberark.Fake
	env map[string]string
}

// startFakeVendors starts every vendor's fake with the test credentials and a few known
// objects: HEC events ev-1 (new) and ev-done (remediated), PTA events pta-1 and pta-2 (open).
func startFakeVendors(t *testing.T) *fakeVendors {
	t.Helper()
	f := &fakeVendors{
		hec: checkpoint.NewFake(testClientID, testAccessKey),
		gz:  gravityzone.NewFake(testGZKey),
		pta: cyberark.NewFake(testPVWAUser, testPVWASecret),
	}
	f.hec.AddEvent(map[string]any{"eventId": "ev-1", "state": "new", "type": "phishing"})
	f.hec.AddEvent(map[string]any{"eventId": "ev-done", "state": "remediated", "type": "phishing"})
	f.pta.AddEvent(map[string]any{"id": "pta-1", "type": "SuspectedCredentialsTheft", "score": 87})
	f.pta.AddEvent(map[string]any{"id": "pta-2", "type": "UnmanagedPrivilegedAccess", "score": 40})
	hecURL, stopHEC := f.hec.Start()
	gzURL, stopGZ := f.gz.Start()
	ptaURL, stopPTA := f.pta.Start()
	t.Cleanup(func() { stopHEC(); stopGZ(); stopPTA() })
	f.env = map[string]string{
		"HEC_BASE_URL": hecURL, "HEC_CLIENT_ID": testClientID, "HEC_ACCESS_KEY": testAccessKey,
		"GZ_BASE_URL": gzURL, "GZ_API_KEY": testGZKey,
		"PVWA_BASE_URL": ptaURL, "PVWA_USERNAME": testPVWAUser, "PVWA_PASSWORD": testPVWASecret,
	}
	return f
}

// with returns the vendors' environment and extra settings, extra winning.
func (f *fakeVendors) with(extra map[string]string) map[string]string {
	env := make(map[string]string, len(f.env)+len(extra))
	for k, v := range f.env {
		env[k] = v
	}
	for k, v := range extra {
		env[k] = v
	}
	return env
}

// environ is with as NAME=value pairs, for a child process.
func (f *fakeVendors) environ(extra map[string]string) []string {
	var out []string
	for k, v := range f.with(extra) {
		out = append(out, k+"="+v)
	}
	slices.Sort(out)
	return out
}

// secrets are every credential the fakes accept, for checks that none leaks.
func (f *fakeVendors) secrets() []string {
	return []string{testAccessKey, testGZKey, testPVWASecret}
}
