// Package config holds one envconfig struct per service. Every variable has the
// prefix VODPIPE_; the configuration table of docs/configuration.md is generated from these structs.
package config

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/kelseyhightower/envconfig"
)

// Prefix is the environment prefix of every variable.
const Prefix = "VODPIPE"

// Credentials are the Tencent Cloud API keys. Only the signature service reads
// them; no other service's config embeds this struct.
type Credentials struct {
	SecretID      string `envconfig:"SECRET_ID" desc:"Tencent Cloud SecretId used to sign upload signatures"`
	SecretKey     string `envconfig:"SECRET_KEY" desc:"Tencent Cloud SecretKey (prefer SECRET_KEY_FILE)"`
	SecretKeyFile string `envconfig:"SECRET_KEY_FILE" desc:"file holding the SecretKey, e.g. a mounted Kubernetes secret"`
}

// Key returns the SecretKey, read from SecretKeyFile when that is set.
func (c Credentials) Key() (string, error) {
	if c.SecretKeyFile != "" {
		return ReadSecretFile("SECRET_KEY_FILE", c.SecretKeyFile)
	}
	return c.SecretKey, nil
}

// Load fills spec from the environment with the VODPIPE_ prefix.
func Load(spec any) error { return LoadPrefix(Prefix, spec) }

// LoadPrefix fills spec from the environment with prefix. An error names the
// variable and what is wrong, never the value: values hold secrets, and an
// error is logged. A decoder's error is shown only when it is a [Reasoner].
func LoadPrefix(prefix string, spec any) error {
	err := envconfig.Process(prefix, spec)
	var pe *envconfig.ParseError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &pe):
		reason := "is not a valid " + pe.TypeName
		var r Reasoner
		if errors.As(pe.Err, &r) {
			reason = r.Reason()
		}
		return &VarError{Var: pe.KeyName, Reason: reason}
	}
	return fmt.Errorf("config: %w", err)
}

// Reasoner is an error from a variable's Decode method that can say what is
// wrong without quoting any part of the value.
type Reasoner interface {
	error
	Reason() string
}

// VarError is an environment variable that could not be read.
type VarError struct {
	Var    string // e.g. VODPIPE_API_KEYS
	Reason string // what is wrong, without the value
}

func (e *VarError) Error() string { return "config: " + e.Var + ": " + e.Reason }

// ReadSecretFile reads a one-line secret from the file of the variable
// VODPIPE_<variable>; an empty one is an error. Its errors name the
// variable and the file, never the content.
func ReadSecretFile(variable, path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("config: %s_%s: %w", Prefix, variable, err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("config: %s_%s: %s is empty", Prefix, variable, path)
	}
	return s, nil
}

// KeyList returns the keys of a list variable (VODPIPE_<variable>) or of
// its file (VODPIPE_<variable>_FILE: comma- or newline-separated), never
// both, blanks dropped, and the variable they came from for the caller's
// errors. None is an empty list; a file without a key is an error. Errors
// name the variables, never a key.
func KeyList(variable string, list []string, file string) (keys []string, from string, err error) {
	name, fileName := Prefix+"_"+variable, Prefix+"_"+variable+"_FILE"
	text := strings.Join(list, ",")
	switch {
	case file != "" && len(list) > 0:
		return nil, "", fmt.Errorf("config: %s and %s are both set: set one", name, fileName)
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, "", fmt.Errorf("config: read %s: %w", fileName, err)
		}
		name, text = fileName, string(b)
	}
	for _, k := range strings.FieldsFunc(text, func(r rune) bool { return r == ',' || r == '\n' || r == '\r' }) {
		if k = strings.TrimSpace(k); k != "" {
			keys = append(keys, k)
		}
	}
	if file != "" && len(keys) == 0 {
		return nil, "", fmt.Errorf("config: %s holds no key", fileName)
	}
	return keys, name, nil
}

// Redis is how workers reach Redis. One address: a single node; several: a
// cluster; with MasterName: Sentinel.
type Redis struct {
	URL        string   `envconfig:"REDIS_URL" desc:"redis://[:password@]host:port/db; empty: resume state in a JetStream key-value bucket"`
	Addrs      []string `envconfig:"REDIS_ADDRS" desc:"Redis Cluster or Sentinel addresses, comma-separated (instead of REDIS_URL)"`
	MasterName string   `envconfig:"REDIS_MASTER_NAME" desc:"Sentinel master name"`
	Password   string   `envconfig:"REDIS_PASSWORD" desc:"Redis password (with REDIS_ADDRS)"`
	TLS        bool     `envconfig:"REDIS_TLS" desc:"use TLS to Redis (with REDIS_ADDRS)"`
	// WaitReplicas is resume.WithReplicas's count: see Replicas.
	WaitReplicas string `envconfig:"REDIS_WAIT_REPLICAS" default:"auto" desc:"replicas that must hold a lease, a session and the state before a commit (Redis WAIT), so a failover costs a re-sent part, never a second file: a number, or auto (1 with Sentinel, else 0)"`
}

// Replicas is how many replicas a lease, a session and the state before a
// commit must reach: WaitReplicas, where auto (or empty) is 1 with Sentinel
// (MasterName: a primary that fails over to a replica) and 0 otherwise.
func (r Redis) Replicas() (int, error) {
	switch r.WaitReplicas {
	case "", "auto":
		if r.MasterName != "" {
			return 1, nil
		}
		return 0, nil
	}
	n, err := strconv.Atoi(r.WaitReplicas)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("config: REDIS_WAIT_REPLICAS %q: want auto or a number of replicas (0 or more)", r.WaitReplicas)
	}
	return n, nil
}

// Enabled reports whether Redis is configured.
func (r Redis) Enabled() bool { return r.URL != "" || len(r.Addrs) > 0 }
