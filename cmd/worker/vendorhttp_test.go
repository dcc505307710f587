package main

import (
	"context"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"net/http/httptest"

	"github.com/riposte-soar/riposte/internal/actions"
	"github.com/riposte-soar/riposte/internal/actions/checkpoint"
	"github.com/riposte-soar/riposte/internal/actions/vendorhttp"
)

type requestLog struct{ got []string }

func (r *requestLog) VendorRequest(vendor, code string, _ time.Duration) {
	r.got = append(r.got, vendor+" "+code)
}

// A vendor behind a private CA is reached with its own CA file, names riposte in User-Agent,
// and every request is timed; without the CA file the TLS handshake is refused.
func TestVendorHTTPClientTrustsTheVendorsCA(t *testing.T) {
	t.Parallel()
	hec := checkpoint.NewFake(testClientID, testAccessKey)
	srv := httptest.NewTLSServer(hec)
	t.Cleanup(srv.Close)
	caFile := filepath.Join(t.TempDir(), "hec-ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(caFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	v := checkpoint.Vendor()
	settings := actions.Settings{checkpoint.EnvBaseURL: srv.URL, checkpoint.EnvClientID: testClientID, checkpoint.EnvAccessKey: testAccessKey}

	run := func(s actions.Settings, obs vendorhttp.RequestObserver) error {
		hc, err := vendorhttp.NewHTTPClient(v, s, 8, obs)
		if err != nil {
			return err
		}
		inst, _, err := v.Configure(s, actions.Deps{HTTP: hc, UserAgent: "riposte/9.9.9"})
		if err != nil {
			return err
		}
		reg, _ := actions.NewRegistry(inst.Actions...)
		a, _ := reg.Lookup("checkpoint.get_exceptions")
		_, err = actions.Invoke(context.Background(), a, actions.Inputs{"excType": "whitelist"})
		return err
	}

	if err := run(settings, nil); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("without the CA file: %v, want a certificate error", err)
	}
	withCA := actions.Settings{}
	for k, val := range settings {
		withCA[k] = val
	}
	withCA[checkpoint.EnvCACert] = caFile
	obs := &requestLog{}
	if err := run(withCA, obs); err != nil {
		t.Fatalf("with %s: %v", checkpoint.EnvCACert, err)
	}
	reqs := hec.Requests()
	if len(reqs) == 0 || reqs[0].Header.Get("User-Agent") != "riposte/9.9.9" {
		t.Errorf("User-Agent %q, want riposte/9.9.9", reqs[0].Header.Get("User-Agent"))
	}
	if strings.Join(obs.got, ",") != "checkpoint 200,checkpoint 200" {
		t.Errorf("requests timed: %v, want the token and the call", obs.got)
	}

	// A CA file that is not one is a start-up problem, named.
	bad := filepath.Join(t.TempDir(), "not-a-ca.pem")
	_ = os.WriteFile(bad, []byte("hello"), 0o600)
	withCA[checkpoint.EnvCACert] = bad
	if _, _, err := v.Configure(withCA, actions.Deps{}); err == nil || !strings.Contains(err.Error(), "HEC_CA_CERT") {
		t.Errorf("a bad CA file: %v", err)
	}
}
