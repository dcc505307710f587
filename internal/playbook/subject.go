package playbook

import (
	"strings"
	"unicode"
)

// checkFilter says what is wrong with a NATS subject filter, or "" when nothing is. The server
// would reject these on a subscription; here they fail at load with the line.
func checkFilter(f string) string {
	if f == "" {
		return "is empty"
	}
	if strings.IndexFunc(f, unicode.IsSpace) >= 0 {
		return "contains whitespace"
	}
	tokens := strings.Split(f, ".")
	for i, t := range tokens {
		switch {
		case t == "":
			return "has an empty token"
		case t == ">" && i != len(tokens)-1:
			return `has ">" before the last token`
		case t != ">" && t != "*" && strings.ContainsAny(t, "*>"):
			return `has a wildcard inside a token; "*" and ">" must be whole tokens`
		}
	}
	return ""
}

// matchSubject matches without splitting the subject, as it runs for every alert and playbook.
// checkFilter has made sure '>' can only be the filter's last token.
func matchSubject(filter []string, subject string) bool {
	rest := subject
	for i, ft := range filter {
		if ft == ">" {
			return rest != ""
		}
		if rest == "" {
			return false
		}
		tok, after, more := strings.Cut(rest, ".")
		if ft != "*" && ft != tok {
			return false
		}
		if !more {
			return i == len(filter)-1
		}
		rest = after
	}
	return false
}
