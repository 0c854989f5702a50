package natsconf

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/vodpipe/vodpipe/internal/natsembed"
	"github.com/vodpipe/vodpipe/internal/natsperm"
)

// Every service connects with its name (as the server lists it), endless
// reconnects, and the credentials file when one is set; options passed
// last win.
func TestNATSOptions(t *testing.T) {
	ns := startNATS(t)
	cfg := NATS{URL: ns.ClientURL()}

	for _, tc := range []struct {
		extra []nats.Option
		want  string
	}{
		{nil, "vodpipe-test"},
		{[]nats.Option{nats.Name("vodpipe-other")}, "vodpipe-other"},
	} {
		nc := connect(t, cfg, tc.extra...)
		if nc.Opts.MaxReconnect != -1 {
			t.Errorf("MaxReconnect = %d, want -1 (endless)", nc.Opts.MaxReconnect)
		}
		cid, err := nc.GetClientID()
		if err != nil {
			t.Fatal(err)
		}
		cz, err := ns.Connz(&natsserver.ConnzOptions{CID: cid})
		if err != nil {
			t.Fatal(err)
		}
		if len(cz.Conns) != 1 || cz.Conns[0].Name != tc.want {
			t.Errorf("server lists %+v, want the connection named %q", cz.Conns, tc.want)
		}
	}
}

// A user with a password from a file, and a token from a file, reach a
// server that requires them; a wrong password does not.
func TestNATSAuthFromFiles(t *testing.T) {
	users := natsembed.NewUsers()
	guarded := startNATS(t, natsembed.WithUsers(users))
	nc := connect(t, NATS{URL: guarded.ClientURL(), User: string(natsperm.Worker), PasswordFile: writeFile(t, "pw", users.Passwords[natsperm.Worker]+"\n")})
	if nc.ConnectedUrl() == "" {
		t.Fatal("not connected")
	}
	wrong := NATS{URL: guarded.ClientURL(), User: string(natsperm.Worker), PasswordFile: writeFile(t, "wrong", "not-it")}
	opts, err := wrong.Options("vodpipe-test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nats.Connect(wrong.URL, append(opts, nats.MaxReconnects(0))...); !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("a wrong password: %v, want an authorization error", err)
	}

	token := startNATS(t, natsembed.WithOptions(func(o *natsserver.Options) { o.Authorization = "tok-123" }))
	connect(t, NATS{URL: token.ClientURL(), TokenFile: writeFile(t, "token", "tok-123\n")})
}

// Options refuses what it cannot use: unreadable files, two ways to
// authenticate, half a client certificate. The error names the variable and
// never the content of a secret file.
func TestNATSOptionsRefuse(t *testing.T) {
	secret := "s3cret-content-XYZ"
	pw := writeFile(t, "pw", secret)
	junk := writeFile(t, "junk", secret)
	missing := filepath.Join(t.TempDir(), "missing")
	for _, tc := range []struct {
		name string
		cfg  NATS
		want string
	}{
		{"missing creds", NATS{CredsFile: missing}, "VODPIPE_NATS_CREDS"},
		{"missing password", NATS{User: "u", PasswordFile: missing}, "VODPIPE_NATS_PASSWORD_FILE"},
		{"user without password", NATS{User: "u"}, "VODPIPE_NATS_PASSWORD_FILE"},
		{"password without user", NATS{PasswordFile: pw}, "VODPIPE_NATS_USER"},
		{"missing token", NATS{TokenFile: missing}, "VODPIPE_NATS_TOKEN_FILE"},
		{"empty token", NATS{TokenFile: writeFile(t, "empty", "\n")}, "VODPIPE_NATS_TOKEN_FILE"},
		{"bad seed", NATS{NkeySeedFile: junk}, "VODPIPE_NATS_NKEY_SEED_FILE"},
		{"token and user", NATS{TokenFile: pw, User: "u", PasswordFile: pw}, "VODPIPE_NATS_USER and VODPIPE_NATS_TOKEN_FILE"},
		{"creds and seed", NATS{CredsFile: pw, NkeySeedFile: pw}, "VODPIPE_NATS_CREDS and VODPIPE_NATS_NKEY_SEED_FILE"},
		{"cert without key", NATS{TLSCert: pw}, "VODPIPE_NATS_TLS_KEY"},
		{"missing CA", NATS{TLSCA: missing}, "VODPIPE_NATS_TLS_CA"},
		{"CA not PEM", NATS{TLSCA: junk}, "VODPIPE_NATS_TLS_CA"},
		{"key not PEM", NATS{TLSCert: junk, TLSKey: junk}, "VODPIPE_NATS_TLS_KEY"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.cfg.Options("vodpipe-test")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one naming %s", err, tc.want)
			}
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("the error shows the file's content: %v", err)
			}
		})
	}
}

// TLS variables give a client that verifies the server with the CA and
// presents its certificate.
func TestNATSOptionsTLS(t *testing.T) {
	ca, cert, key := testCerts(t)
	opts, err := NATS{TLSCA: ca, TLSCert: cert, TLSKey: key}.Options("vodpipe-test")
	if err != nil {
		t.Fatal(err)
	}
	o := nats.GetDefaultOptions()
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			t.Fatal(err)
		}
	}
	if !o.Secure || o.TLSConfig == nil || o.TLSConfig.RootCAs == nil || len(o.TLSConfig.Certificates) != 1 {
		t.Fatalf("TLS options: secure %v, config %+v", o.Secure, o.TLSConfig)
	}
}

func startNATS(t *testing.T, opts ...natsembed.Option) *natsserver.Server {
	t.Helper()
	ns, err := natsembed.Start(filepath.Join(t.TempDir(), "nats"), "127.0.0.1", natsserver.RANDOM_PORT, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns
}

func connect(t *testing.T, cfg NATS, extra ...nats.Option) *nats.Conn {
	t.Helper()
	opts, err := cfg.Options("vodpipe-test", extra...)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// testCerts writes a self-signed CA and a client certificate it signed,
// returning the files of the CA, the certificate and its key.
func testCerts(t *testing.T) (ca, cert, key string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	clientKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	clientTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "worker"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	clientDER, err := x509.CreateCertificate(rand.Reader, clientTmpl, caTmpl, &clientKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(clientKey)
	if err != nil {
		t.Fatal(err)
	}
	pemFile := func(name, typ string, der []byte) string {
		return writeFile(t, name, string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})))
	}
	return pemFile("ca.pem", "CERTIFICATE", caDER), pemFile("client.pem", "CERTIFICATE", clientDER), pemFile("client.key", "EC PRIVATE KEY", keyDER)
}
