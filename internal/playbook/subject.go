package playbook

import (
	"strings"
	"unicode"
)

// checkFilter says what is wrong with a NATS subject filter, or "" when nothing is. The server
// would reject these on a subscription; here they fail at load with the line and the reason,
// which the server's own check (server.IsValidSubject) does not give. Matching is the
// server's (see matchTokens).
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

// Subject is an alert's subject cut into its tokens once, so that matching it against every
// playbook's filters does not cut it again for each (Playbook.Matches).
type Subject struct{ tokens []string }

// SplitSubject cuts subject at its dots for Playbook.Matches.
func SplitSubject(subject string) Subject { return Subject{tokens: splitTokens(nil, subject)} }

// splitTokens appends subject's tokens to tokens, as the server cuts a subject
// (tokenizeSubjectIntoSlice): "a..b" has an empty token and "" is one empty token.
func splitTokens(tokens []string, subject string) []string {
	start := 0
	for i := 0; i < len(subject); i++ {
		if subject[i] == '.' {
			tokens = append(tokens, subject[start:i])
			start = i + 1
		}
	}
	return append(tokens, subject[start:])
}

// matchTokens is server.SubjectMatchesFilter on subject and filter already cut into tokens
// (the server's isSubsetMatchTokenized, kept to the letter; FuzzMatchTokens holds it to the
// server's): '*' in the filter is exactly one token, '>' one or more trailing tokens, and a
// wildcard in the subject is matched only by the same wildcard in the filter.
func matchTokens(subject, filter []string) bool {
	for i, f := range filter {
		if i >= len(subject) {
			return false
		}
		if f == "" {
			return false
		}
		if f == ">" {
			return true
		}
		s := subject[i]
		if s == "" || s == ">" {
			return false
		}
		if s == "*" {
			if f != "*" {
				return false
			}
			continue
		}
		if f[0] != '*' && s != f { // f[0], as the server: "*x" is no filter, and checkFilter says so
			return false
		}
	}
	return len(subject) == len(filter)
}
