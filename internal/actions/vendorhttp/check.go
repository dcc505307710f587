package vendorhttp

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"unicode"
)

// BaseURL checks a vendor's base URL and returns it without a trailing slash. what names it in
// errors, with the variable that sets it (`GravityZone access URL (GZ_BASE_URL)`). A URL that
// carries credentials is refused without being echoed.
func BaseURL(what, raw string) (string, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return "", fmt.Errorf("%s is empty", what)
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url.Parse's error quotes the input, which may hold a password.
		return "", fmt.Errorf("%s is not a valid URL", what)
	}
	if u.User != nil {
		return "", fmt.Errorf("%s %q must not carry credentials", what, u.Redacted())
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%s %q must be an absolute http or https URL", what, raw)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("%s %q must not have a query or fragment", what, raw)
	}
	return strings.TrimRight(raw, "/"), nil
}

// ID rejects values that are surely a rendering mistake rather than a vendor id: empty, or
// holding a '/', whitespace or control characters.
func ID(id string) error {
	switch {
	case strings.TrimSpace(id) == "":
		return errors.New("must not be empty")
	case strings.ContainsRune(id, '/'):
		return fmt.Errorf("%q must not contain '/'", id)
	case strings.IndexFunc(id, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		return fmt.Errorf("%q must not contain whitespace or control characters", id)
	}
	return nil
}

// PathSegment is ID for a value that becomes one segment of a URL path.
func PathSegment(v string) error {
	if err := ID(v); err != nil {
		return err
	}
	if v == "." || v == ".." || strings.ContainsRune(v, '\\') {
		return fmt.Errorf("%q is not a usable path segment", v)
	}
	return nil
}

// IDs checks every id of a list with ID, naming the first bad one by its position.
func IDs(ids []string) error {
	if len(ids) == 0 {
		return errors.New("must not be empty")
	}
	for i, id := range ids {
		if err := ID(id); err != nil {
			return fmt.Errorf("item %d: %w", i, err)
		}
	}
	return nil
}

// Dedupe returns ids without repeats, in their first order.
func Dedupe(ids []string) []string {
	seen := make(map[string]bool, len(ids))
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

// ListForError shows ids as [a1 b2], shortened when a playbook sends many.
// Clients build it before every call, for an error most calls never have: joined, not
// formatted with fmt (which was 3 to 4 % of a vendor-bound worker's CPU).
func ListForError(ids []string) string {
	const show = 5
	if len(ids) <= show {
		return "[" + strings.Join(ids, " ") + "]"
	}
	return "[" + strings.Join(ids[:show], " ") + "]… (" + strconv.Itoa(len(ids)) + " in all)"
}
