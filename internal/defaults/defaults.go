// Package defaults fills a configuration's zero fields from their
// `default:"…"` struct tags: the tags envconfig reads are then the one
// source of every default, for configurations read from the environment
// and for those built in code (tests, `vodpipe up`, the benchmarks).
package defaults

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"
)

var durationType = reflect.TypeFor[time.Duration]()

// Option changes what Fill counts as unset.
type Option int

// NegativeUnset makes Fill count a negative number as unset too, for
// configurations where no negative value means anything.
const NegativeUnset Option = 1

// Fill sets every zero field of the struct v points to (embedded and nested
// structs included) to its `default` tag's value. It panics on a tag it
// cannot parse: tags are code, and a test fills every configuration.
func Fill(v any, opts ...Option) {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.Elem().Kind() != reflect.Struct {
		panic(fmt.Sprintf("defaults: Fill(%T): want a pointer to a struct", v))
	}
	negative := len(opts) > 0 && opts[0] == NegativeUnset
	fill(rv.Elem(), negative)
}

// unset reports whether a field takes its default.
func unset(v reflect.Value, negative bool) bool {
	if v.IsZero() {
		return true
	}
	if !negative {
		return false
	}
	switch v.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return v.Int() < 0
	case reflect.Float32, reflect.Float64:
		return v.Float() < 0
	}
	return false
}

func fill(s reflect.Value, negative bool) {
	t := s.Type()
	for i := range t.NumField() {
		f, fv := t.Field(i), s.Field(i)
		if !f.IsExported() || f.Tag.Get("ignored") == "true" {
			continue
		}
		if fv.Kind() == reflect.Struct && fv.Type() != reflect.TypeFor[time.Time]() {
			fill(fv, negative)
			continue
		}
		def, ok := f.Tag.Lookup("default")
		if !ok || !unset(fv, negative) {
			continue
		}
		if err := set(fv, def); err != nil {
			panic(fmt.Sprintf("defaults: %s.%s: default %q: %v", t.Name(), f.Name, def, err))
		}
	}
}

// decoder is a type that parses its own value (envconfig.Decoder).
type decoder interface{ Decode(value string) error }

func set(v reflect.Value, s string) error {
	if d, ok := v.Addr().Interface().(decoder); ok {
		return d.Decode(s)
	}
	if v.Type() == durationType {
		d, err := time.ParseDuration(s)
		v.SetInt(int64(d))
		return err
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Slice:
		if v.Type().Elem().Kind() != reflect.String {
			return fmt.Errorf("a %s default is not supported", v.Type())
		}
		v.Set(reflect.ValueOf(strings.Split(s, ",")).Convert(v.Type()))
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		v.SetBool(b)
		return err
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(s, 0, v.Type().Bits())
		v.SetInt(n)
		return err
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, err := strconv.ParseUint(s, 0, v.Type().Bits())
		v.SetUint(n)
		return err
	case reflect.Float32, reflect.Float64:
		n, err := strconv.ParseFloat(s, v.Type().Bits())
		v.SetFloat(n)
		return err
	default:
		return fmt.Errorf("a %s default is not supported", v.Type())
	}
	return nil
}
