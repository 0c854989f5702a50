package vodsim

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"time"
)

// Browsers reach VOD and COS cross-origin: both answer CORS as the real
// services do (VOD's API for any origin; the upload buckets' CORS rule allows
// any origin, the SDKs' headers, and exposes what the SDKs read).
const (
	corsAllowMethods  = "GET, PUT, POST, DELETE, HEAD, OPTIONS"
	corsExposeHeaders = "ETag, Content-Length, x-cos-hash-crc64ecma, x-cos-request-id, x-cos-version-id, x-cos-trace-id, Date"
	corsDefaultAllow  = "authorization, content-type, content-md5, x-cos-security-token, x-cos-acl, x-cos-meta-*, x-cos-storage-class, x-cos-traffic-limit, range, origin"
)

// withCORS answers preflights and adds CORS headers to answers for browsers.
func withCORS(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin == "" {
			next.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", origin)
		h.Add("Vary", "Origin")
		h.Set("Access-Control-Expose-Headers", corsExposeHeaders)
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			allow := r.Header.Get("Access-Control-Request-Headers")
			if allow == "" {
				allow = corsDefaultAllow
			}
			h.Set("Access-Control-Allow-Methods", corsAllowMethods)
			h.Set("Access-Control-Allow-Headers", allow)
			h.Set("Access-Control-Max-Age", "600")
			// Chromium's Private Network Access preflight: vodsim stands in for a public service.
			if r.Header.Get("Access-Control-Request-Private-Network") == "true" {
				h.Set("Access-Control-Allow-Private-Network", "true")
			}
			w.WriteHeader(http.StatusOK)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// SelfSignedTLS returns a TLS config with a certificate made now for the
// hosts a browser reaches vodsim as (VOD's two hosts and COS bucket hosts).
// Browsers in tests accept it with --ignore-certificate-errors.
func SelfSignedTLS(extraHosts ...string) (*tls.Config, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	hosts := append([]string{"vod2.qcloud.com", "vod2.dnsv1.com", "vod.tencentcloudapi.com", "*.myqcloud.com",
		"*.cos.ap-guangzhou.myqcloud.com", "*.cos.ap-chongqing.myqcloud.com", "*.cos.ap-shanghai.myqcloud.com", "localhost"}, extraHosts...)
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "vodsim"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(30 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("vodsim: self-signed certificate: %w", err)
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, nil
}

// TLSConfig returns the configured certificate (TLS_CERT/TLS_KEY files) or a self-signed one.
func (s *Server) TLSConfig() (*tls.Config, error) {
	if s.cfg.TLSCert != "" || s.cfg.TLSKey != "" {
		cert, err := tls.LoadX509KeyPair(s.cfg.TLSCert, s.cfg.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("vodsim: TLS certificate: %w", err)
		}
		return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}, nil
	}
	return SelfSignedTLS()
}

// ServeTLS serves the same APIs over TLS on l until ctx ends, so that a
// browser can reach vodsim as https://vod2.qcloud.com and https COS buckets.
func (s *Server) ServeTLS(ctx context.Context, l net.Listener) error {
	cfg, err := s.TLSConfig()
	if err != nil {
		return err
	}
	return s.Serve(ctx, tls.NewListener(l, cfg))
}
