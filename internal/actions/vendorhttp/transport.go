package vendorhttp

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/riposte-soar/riposte/internal/actions"
)

// RequestObserver hears every vendor HTTP request: the vendor, the answer's status ("error"
// when there was none) and how long it took. The worker's metrics implement it.
type RequestObserver interface {
	VendorRequest(vendor, code string, took time.Duration)
}

// NewHTTPClient is the HTTP client of one vendor: the standard proxy variables (HTTPS_PROXY,
// NO_PROXY), the vendor's own CA certificates beside the system's (its Vendor.CAVar setting),
// idle connections enough for every alert in flight, and every request timed into obs (nil:
// none).
func NewHTTPClient(vendor actions.Vendor, s actions.Settings, maxInFlight int, obs RequestObserver) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = max(100, maxInFlight*2)
	tr.MaxIdleConnsPerHost = max(2, maxInFlight)
	if vendor.CAVar != "" && s[vendor.CAVar] != "" {
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		pem, err := os.ReadFile(s[vendor.CAVar])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", vendor.CAVar, err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: %s holds no PEM certificate", vendor.CAVar, s[vendor.CAVar])
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	var rt http.RoundTripper = tr
	if obs != nil {
		rt = timedTransport{next: tr, vendor: vendor.Name, obs: obs}
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: rt}, nil
}

type timedTransport struct {
	next   http.RoundTripper
	vendor string
	obs    RequestObserver
}

func (t timedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	began := time.Now()
	resp, err := t.next.RoundTrip(r)
	code := "error"
	if err == nil {
		code = strconv.Itoa(resp.StatusCode)
	}
	t.obs.VendorRequest(t.vendor, code, time.Since(began))
	return resp, err
}
