package doctor

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vigil-gw/vigil/devices/pki"
	"github.com/vigil-gw/vigil/gateway/app"
)

// certWarn is how long before expiry a certificate is worth a warning: time
// to issue a new one and restart at a quiet moment.
const certWarn = 30 * 24 * time.Hour

// certFile is one certificate file and the settings that name it.
type certFile struct {
	path string
	keys []string
}

// certFiles lists every certificate file the configuration names, and the
// site CA (STATE/pki/ca.crt) when it exists, each path once.
func certFiles(cfg app.Config) []certFile {
	var out []certFile
	add := func(key, path string) {
		if path == "" {
			return
		}
		path = filepath.Clean(path)
		for i := range out {
			if out[i].path == path {
				out[i].keys = append(out[i].keys, key)
				return
			}
		}
		out = append(out, certFile{path: path, keys: []string{key}})
	}
	add("http_cert_file", cfg.HTTPCertFile)
	add("broker.tls_cert_file", cfg.Broker.TLSCertFile)
	add("broker.client_ca_file", cfg.Broker.ClientCAFile)
	add("mqtt.cert_file", cfg.MQTT.CertFile)
	add("mqtt.ca_file", cfg.MQTT.CAFile)
	add("evidence.ca_file", cfg.Evidence.CAFile)
	if ca := pki.CAPath(pki.DefaultDir(cfg.State)); fileExists(ca) {
		add("site CA", ca)
	}
	return out
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return !errors.Is(err, fs.ErrNotExist)
}

// checkCertificates judges every certificate in files (a file may hold a
// chain) at now.
func checkCertificates(files []certFile, now time.Time) Finding {
	entries := []map[string]any{}
	d := map[string]any{"files": entries}
	if len(files) == 0 {
		return finding(checkCerts, OK, "no certificate files are configured", "", d)
	}
	worst, count := OK, 0
	var problems []string
	var first *x509.Certificate // the soonest to expire
	var firstFile string
	note := func(s Status, problem string) {
		problems = append(problems, problem)
		if s == Fail || worst == OK {
			worst = s
		}
	}
	for _, f := range files {
		e := map[string]any{"file": f.path, "settings": f.keys}
		entries = append(entries, e)
		raw, err := os.ReadFile(f.path)
		if err != nil {
			e["status"], e["error"] = Fail, unwrapPath(err).Error()
			note(Fail, fmt.Sprintf("%s (%s) cannot be read: %v", f.path, strings.Join(f.keys, ", "), unwrapPath(err)))
			continue
		}
		certs, err := parseCerts(raw)
		if err != nil {
			e["status"], e["error"] = Fail, err.Error()
			note(Fail, fmt.Sprintf("%s (%s) %v", f.path, strings.Join(f.keys, ", "), err))
			continue
		}
		var found []map[string]any
		fileStatus := OK
		for _, c := range certs {
			count++
			s, words := judgeCert(c.NotBefore, c.NotAfter, now)
			found = append(found, map[string]any{"subject": c.Subject.String(), "not_before": c.NotBefore.UTC().Format(time.RFC3339),
				"not_after": c.NotAfter.UTC().Format(time.RFC3339), "status": s})
			if s != OK {
				note(s, fmt.Sprintf("%s (%s) %s", f.path, subjectName(c), words))
				if s == Fail || fileStatus == OK {
					fileStatus = s
				}
			}
			if first == nil || c.NotAfter.Before(first.NotAfter) {
				first, firstFile = c, f.path
			}
		}
		e["status"], e["certificates"] = fileStatus, found
	}
	d["files"] = entries
	if len(problems) > 0 {
		return finding(checkCerts, worst, strings.Join(problems, "; "),
			"renew each certificate named before it expires (for the site CA's: vigil pki issue NAME --kind KIND --force) and restart vigil; "+
				"a certificate not valid yet usually means this machine's clock is wrong (see clock_sync)", d)
	}
	return finding(checkCerts, OK, fmt.Sprintf("%d certificates in %d files are valid; the first to expire is in %s, on %s (in %d days)",
		count, len(files), firstFile, day(first.NotAfter), days(first.NotAfter.Sub(now))), "", d)
}

// parseCerts reads every CERTIFICATE block of a PEM file.
func parseCerts(raw []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, raw = pem.Decode(raw)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("holds a certificate that cannot be parsed: %w", err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("holds no PEM certificate")
	}
	return out, nil
}

// judgeCert says whether a certificate valid from notBefore to notAfter is
// fine at now, and in words what is wrong with it.
func judgeCert(notBefore, notAfter, now time.Time) (Status, string) {
	switch left := notAfter.Sub(now); {
	case left < 0:
		return Fail, "expired on " + day(notAfter)
	case now.Before(notBefore):
		return Warn, "is not valid until " + day(notBefore) + " (is this machine's clock right?)"
	case left <= certWarn:
		return Warn, fmt.Sprintf("expires on %s (in %d days)", day(notAfter), days(left))
	}
	return OK, "valid until " + day(notAfter)
}

func day(t time.Time) string { return t.UTC().Format("2006-01-02") }

// days rounds a positive duration down to whole days.
func days(d time.Duration) int { return int(math.Floor(d.Hours() / 24)) }

func subjectName(c *x509.Certificate) string {
	if c.Subject.CommonName != "" {
		return c.Subject.CommonName
	}
	return c.Subject.String()
}
