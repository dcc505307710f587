// Package jsonval decodes JSON into the plain values that playbook expressions compare and
// render, with numbers kept as exact as Go allows. encoding/json's default (every number a
// float64) garbles integer ids above 2^53 and refuses valid numbers beyond float64's range; with
// UseNumber alone, numbers reach expressions as strings and compare wrongly.
package jsonval

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Decode parses exactly one JSON value. Numbers become int64 when they are whole and fit,
// float64 when they are fractional or in exponent form and finite, and stay json.Number
// (exact text) otherwise: a 20-digit id keeps its digits.
//
// It accepts and produces exactly what encoding/json's Decoder with UseNumber, then Normalize,
// would, with whitespace only around the value; empty input is io.EOF and truncated input
// wraps io.ErrUnexpectedEOF, as there. It is written out by hand because it runs on every
// alert, where the reflection, the separate validating scan and the number round trip of
// encoding/json cost several times the parse itself.
func Decode(data []byte) (any, error) {
	d := decoder{data: data}
	d.skipSpace()
	if d.off == len(data) {
		return nil, io.EOF
	}
	v, err := d.value()
	if err != nil {
		return nil, err
	}
	d.skipSpace()
	if d.off != len(data) {
		return nil, errors.New("unexpected data after the JSON value")
	}
	return v, nil
}

// maxDepth is encoding/json's limit on nested arrays and objects, kept so that the same
// documents are refused and a hostile one cannot exhaust the stack.
const maxDepth = 10000

type decoder struct {
	data  []byte
	off   int
	depth int
	buf   []byte // reused for strings that need unescaping or UTF-8 repair
}

// syntaxError is malformed JSON: msg says what was found, offset is the index of the byte at
// fault (the input's length when it ended too soon).
type syntaxError struct {
	msg    string
	offset int
	eof    bool
}

func (e *syntaxError) Error() string {
	return e.msg + " at offset " + strconv.Itoa(e.offset)
}

// Unwrap lets callers keep telling truncated input from other errors with
// errors.Is(err, io.ErrUnexpectedEOF), as they could with encoding/json.
func (e *syntaxError) Unwrap() error {
	if e.eof {
		return io.ErrUnexpectedEOF
	}
	return nil
}

func (d *decoder) errEOF() error {
	return &syntaxError{msg: "unexpected end of JSON input", offset: len(d.data), eof: true}
}

// errAt reports the byte at i, which cannot continue the value: context is worded as
// encoding/json's, so messages read the same to whoever has seen those.
func (d *decoder) errAt(i int, context string) error {
	if i >= len(d.data) {
		return d.errEOF()
	}
	c := d.data[i]
	var what string
	if c < utf8.RuneSelf {
		what = "invalid character " + strconv.QuoteRune(rune(c))
	} else {
		// Not a character on its own: quoting it as one would name a letter that is not there.
		what = fmt.Sprintf("invalid byte 0x%02x", c)
	}
	return &syntaxError{msg: what + " " + context, offset: i}
}

func (d *decoder) skipSpace() {
	for d.off < len(d.data) {
		switch d.data[d.off] {
		case ' ', '\t', '\n', '\r':
			d.off++
		default:
			return
		}
	}
}

// value parses the value starting at d.off, which is not whitespace.
func (d *decoder) value() (any, error) {
	if d.off >= len(d.data) {
		return nil, d.errEOF()
	}
	switch c := d.data[d.off]; c {
	case '{':
		return d.object()
	case '[':
		return d.array()
	case '"':
		s, err := d.str()
		if err != nil {
			return nil, err
		}
		return s, nil
	case 't':
		return true, d.literal("true")
	case 'f':
		return false, d.literal("false")
	case 'n':
		return nil, d.literal("null")
	default:
		if c == '-' || '0' <= c && c <= '9' {
			return d.number()
		}
		return nil, d.errAt(d.off, "looking for beginning of value")
	}
}

func (d *decoder) literal(lit string) error {
	for j := 1; j < len(lit); j++ {
		if i := d.off + j; i >= len(d.data) || d.data[i] != lit[j] {
			return d.errAt(i, "in literal "+lit+" (expecting "+strconv.QuoteRune(rune(lit[j]))+")")
		}
	}
	d.off += len(lit)
	return nil
}

func (d *decoder) object() (any, error) {
	if d.depth++; d.depth > maxDepth {
		return nil, d.errAt(d.off, "exceeded max depth")
	}
	d.off++
	m := make(map[string]any)
	d.skipSpace()
	if d.off < len(d.data) && d.data[d.off] == '}' {
		d.off++
		d.depth--
		return m, nil
	}
	for {
		if d.off >= len(d.data) || d.data[d.off] != '"' {
			return nil, d.errAt(d.off, "looking for beginning of object key string")
		}
		k, err := d.str()
		if err != nil {
			return nil, err
		}
		d.skipSpace()
		if d.off >= len(d.data) || d.data[d.off] != ':' {
			return nil, d.errAt(d.off, "after object key")
		}
		d.off++
		d.skipSpace()
		v, err := d.value()
		if err != nil {
			return nil, err
		}
		m[k] = v // a repeated key: the last wins, as with encoding/json
		more, err := d.more('}', "after object key:value pair")
		if err != nil {
			return nil, err
		}
		if !more {
			return m, nil
		}
	}
}

func (d *decoder) array() (any, error) {
	if d.depth++; d.depth > maxDepth {
		return nil, d.errAt(d.off, "exceeded max depth")
	}
	d.off++
	d.skipSpace()
	if d.off < len(d.data) && d.data[d.off] == ']' {
		d.off++
		d.depth--
		return []any{}, nil // not nil: encoding/json gives [] for an empty array
	}
	// Most arrays in alerts are short lists (tags, indicators): room for a few saves growing
	// through 1, 2 and 4 elements.
	a := make([]any, 0, 4)
	for {
		v, err := d.value()
		if err != nil {
			return nil, err
		}
		a = append(a, v)
		more, err := d.more(']', "after array element")
		if err != nil {
			return nil, err
		}
		if !more {
			return a, nil
		}
	}
}

// more reads what follows an object's member or an array's element: a comma, and another
// comes, or the closing bracket, and the value ends; anything else is the error context names.
func (d *decoder) more(closing byte, context string) (bool, error) {
	d.skipSpace()
	if d.off < len(d.data) {
		switch d.data[d.off] {
		case ',':
			d.off++
			d.skipSpace()
			return true, nil
		case closing:
			d.off++
			d.depth--
			return false, nil
		}
	}
	return false, d.errAt(d.off, context)
}

// str parses the string whose opening quote is at d.off. Most strings need no unescaping, so
// they are first scanned for the closing quote and copied out in one piece.
func (d *decoder) str() (string, error) {
	data := d.data
	start := d.off + 1
	ascii := true
	for i := start; i < len(data); i++ {
		switch c := data[i]; {
		case c == '"':
			s := data[start:i]
			if !ascii && !utf8.Valid(s) {
				return d.strSlow(start)
			}
			d.off = i + 1
			return string(s), nil
		case c == '\\':
			return d.strSlow(start)
		case c < ' ':
			return "", d.errAt(i, "in string literal")
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return "", d.errEOF()
}

// strSlow unescapes the string whose contents begin at start, repairing invalid UTF-8 one
// byte to one U+FFFD and lone surrogates to U+FFFD, as encoding/json does.
func (d *decoder) strSlow(start int) (string, error) {
	data := d.data
	// Unescaping only shortens text, and only invalid UTF-8 lengthens it: room for the raw
	// contents is nearly always enough, made at once rather than by doubling.
	end := start
	for end < len(data) && data[end] != '"' {
		if data[end] == '\\' {
			end++
		}
		end++
	}
	if cap(d.buf) < end-start {
		d.buf = make([]byte, 0, end-start)
	}
	b := d.buf[:0]
	i := start
	for i < len(data) {
		c := data[i]
		switch {
		case c == '"':
			d.off = i + 1
			d.buf = b
			return string(b), nil
		case c == '\\':
			if i+1 >= len(data) {
				return "", d.errEOF()
			}
			switch e := data[i+1]; e {
			case '"', '\\', '/':
				b = append(b, e)
			case 'b':
				b = append(b, '\b')
			case 'f':
				b = append(b, '\f')
			case 'n':
				b = append(b, '\n')
			case 'r':
				b = append(b, '\r')
			case 't':
				b = append(b, '\t')
			case 'u':
				r, err := d.hex4(i + 2)
				if err != nil {
					return "", err
				}
				i += 6
				if utf16.IsSurrogate(r) {
					// Only a valid pair is taken whole; otherwise the next escape is read on
					// its own, as encoding/json does.
					r2, ok := rune(-1), false
					if i+1 < len(data) && data[i] == '\\' && data[i+1] == 'u' {
						r2, ok = d.peekHex4(i + 2)
					}
					if dec := utf16.DecodeRune(r, r2); ok && dec != utf8.RuneError {
						r = dec
						i += 6
					} else {
						r = utf8.RuneError
					}
				}
				b = utf8.AppendRune(b, r)
				continue
			default:
				return "", d.errAt(i+1, "in string escape code")
			}
			i += 2
		case c < ' ':
			return "", d.errAt(i, "in string literal")
		case c < utf8.RuneSelf:
			b = append(b, c)
			i++
		default:
			r, size := utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && size == 1 {
				b = utf8.AppendRune(b, utf8.RuneError)
			} else {
				b = append(b, data[i:i+size]...)
			}
			i += size
		}
	}
	d.buf = b
	return "", d.errEOF()
}

// hex4 reads the four hex digits of a \u escape starting at i.
func (d *decoder) hex4(i int) (rune, error) {
	var r rune
	for j := i; j < i+4; j++ {
		if j >= len(d.data) {
			return 0, d.errEOF()
		}
		h, ok := unhex(d.data[j])
		if !ok {
			return 0, d.errAt(j, `in \u hexadecimal character escape`)
		}
		r = r<<4 | h
	}
	return r, nil
}

// peekHex4 is hex4 for the second half of a surrogate pair: when it is malformed, the error
// is reported when that escape is read in turn.
func (d *decoder) peekHex4(i int) (rune, bool) {
	if i+4 > len(d.data) {
		return 0, false
	}
	var r rune
	for _, c := range d.data[i : i+4] {
		h, ok := unhex(c)
		if !ok {
			return 0, false
		}
		r = r<<4 | h
	}
	return r, true
}

func unhex(c byte) (rune, bool) {
	switch {
	case '0' <= c && c <= '9':
		return rune(c - '0'), true
	case 'a' <= c && c <= 'f':
		return rune(c - 'a' + 10), true
	case 'A' <= c && c <= 'F':
		return rune(c - 'A' + 10), true
	}
	return 0, false
}

// number parses the number at d.off by JSON's grammar, then converts it by Decode's rules.
func (d *decoder) number() (any, error) {
	data := d.data
	start := d.off
	i := start
	if data[i] == '-' {
		i++
	}
	digits := i
	switch {
	case i >= len(data):
		return nil, d.errEOF()
	case data[i] == '0':
		i++ // no leading zeros: "01" is 0 followed by something that cannot follow it
	case '1' <= data[i] && data[i] <= '9':
		for i++; i < len(data) && isDigit(data[i]); i++ {
		}
	default:
		return nil, d.errAt(i, "in numeric literal")
	}
	whole := true
	if i < len(data) && data[i] == '.' {
		whole = false
		if i++; i >= len(data) || !isDigit(data[i]) {
			return nil, d.errAt(i, "after decimal point in numeric literal")
		}
		for i++; i < len(data) && isDigit(data[i]); i++ {
		}
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		whole = false
		if i++; i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		if i >= len(data) || !isDigit(data[i]) {
			return nil, d.errAt(i, "in exponent of numeric literal")
		}
		for i++; i < len(data) && isDigit(data[i]); i++ {
		}
	}
	d.off = i
	text := data[start:i]
	if whole {
		// Up to 18 digits cannot overflow int64, so nearly every whole number is converted
		// here, without strconv's general checks.
		if i-digits <= 18 {
			var n int64
			for _, c := range data[digits:i] {
				n = n*10 + int64(c-'0')
			}
			if digits > start {
				n = -n
			}
			return n, nil
		}
	}
	return number(text), nil
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// Normalize applies Decode's number rules to a value decoded with UseNumber, in place for maps
// and slices.
func Normalize(v any) any {
	switch t := v.(type) {
	case json.Number:
		return number(t)
	case map[string]any:
		for k, e := range t {
			t[k] = Normalize(e)
		}
		return t
	case []any:
		for i, e := range t {
			t[i] = Normalize(e)
		}
		return t
	}
	return v
}

// number converts a number's text, valid by JSON's grammar, by Decode's rules. It takes the
// decoder's bytes as they are, so that a number is copied into a string only when kept as text.
func number[T json.Number | []byte](text T) any {
	if !strings.ContainsAny(string(text), ".eE") {
		if i, err := strconv.ParseInt(string(text), 10, 64); err == nil {
			return i
		}
		return json.Number(text) // a whole number too large for int64: keep every digit
	}
	if f, err := strconv.ParseFloat(string(text), 64); err == nil && !math.IsInf(f, 0) {
		return f
	}
	return json.Number(text)
}
