package checkpoint

import (
	"encoding/json"
	"testing"
	"time"
)

// The auth answer's lifetime comes in several shapes across HEC deployments; each must give a
// renewal time, and nonsense must give the short default rather than a token kept forever.
func TestTokenLifetime(t *testing.T) {
	t.Parallel()
	issued := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name              string
		expiresIn, expire any
		want              time.Duration
	}{
		{"expiresIn number", json.Number("1800"), nil, 30 * time.Minute},
		{"expiresIn numeric string", "900", nil, 15 * time.Minute},
		{"expiresIn wins over expires", json.Number("60"), "2026-11-24T12:00:00Z", time.Minute},
		{"expires as Unix seconds", nil, json.Number("1795518000"), time.Hour},
		{"expires as Unix milliseconds", nil, json.Number("1795518000000"), time.Hour},
		{"expires as RFC 3339", nil, "2026-11-24T10:20:00Z", 20 * time.Minute},
		{"expires in the past", nil, "2026-11-24T09:00:00Z", defaultTokenLifetime},
		{"zero expiresIn", json.Number("0"), nil, defaultTokenLifetime},
		{"garbage", "soon", "later", defaultTokenLifetime},
		{"nothing", nil, nil, defaultTokenLifetime},
	}
	for _, tt := range tests {
		if got := tokenLifetime(tt.expiresIn, tt.expire, issued); got != tt.want {
			t.Errorf("%s: lifetime = %v, want %v", tt.name, got, tt.want)
		}
	}
}
