// Package jsonval decodes JSON into the plain values that playbook expressions compare and
// render, with numbers kept as exact as Go allows. encoding/json's default (every number a
// float64) garbles integer ids above 2^53 and refuses valid numbers beyond float64's range; with
// UseNumber alone, numbers reach expressions as strings and compare wrongly.
package jsonval

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// Decode parses exactly one JSON value. Numbers become int64 when they are whole and fit,
// float64 when they are fractional or in exponent form and finite, and stay json.Number
// (exact text) otherwise: a 20-digit id keeps its digits.
func Decode(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("unexpected data after the JSON value")
	}
	return Normalize(v), nil
}

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

func number(n json.Number) any {
	s := string(n)
	if !strings.ContainsAny(s, ".eE") {
		if i, err := strconv.ParseInt(s, 10, 64); err == nil {
			return i
		}
		return n // a whole number too large for int64: keep every digit
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && !math.IsInf(f, 0) {
		return f
	}
	return n
}
