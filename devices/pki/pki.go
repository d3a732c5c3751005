// Package pki is a small certificate authority for one site: it signs the
// certificates that devices, the gateway and the MQTT broker present to each
// other, so that the broker can tell who a client is from its TLS certificate
// and nobody on the network can raise or cancel an alarm as someone else.
//
// Everything lives in one directory (by default STATE/pki):
//
//	ca.crt, ca.key                   the site CA (the key never leaves this directory)
//	devices/ID.crt, devices/ID.key   a device's client certificate, CN = device id
//	gateways/ID.crt, gateways/ID.key the gateway's client certificate, CN = gateway_id
//	servers/NAME.crt, servers/NAME.key a broker's server certificate, with its host names
//
// Keys are ECDSA P-256 in PKCS#8 PEM, files 0600 in directories 0700.
// Certificates are PEM, 0644. Nothing is overwritten unless the caller asks
// (Reissue); every file is written to a temporary name, synced and then
// linked or renamed into place, so a crash never leaves half a key.
//
// The package never prints or logs key material.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/vigil-gw/vigil/devices"
)

// Kind is what a certificate is for.
type Kind string

// Certificate kinds.
const (
	// Device is a duress button or camera: client authentication, CN = device id.
	Device Kind = "device"
	// Gateway is a Vigil gateway: client authentication, CN = gateway_id.
	Gateway Kind = "gateway"
	// Server is an MQTT broker: server authentication, with host names and
	// IP addresses as subject alternative names.
	Server Kind = "server"
)

// ParseKind accepts "device", "gateway" or "server".
func ParseKind(s string) (Kind, error) {
	switch k := Kind(s); k {
	case Device, Gateway, Server:
		return k, nil
	}
	return "", fmt.Errorf("pki: kind %q is not device, gateway or server", s)
}

// subdir is where certificates of a kind are kept, under the CA directory.
func (k Kind) subdir() string { return string(k) + "s" }

// Default validity periods.
const (
	DefaultCAValidity   = 10 * 365 * 24 * time.Hour
	DefaultLeafValidity = 2 * 365 * 24 * time.Hour
	// backdate starts each certificate's validity a little in the past, so a
	// peer whose clock is a few minutes behind does not refuse a fresh one.
	backdate = time.Hour
)

// File names of the CA in its directory.
const (
	CACertFile = "ca.crt"
	CAKeyFile  = "ca.key"
)

// Sentinel errors; check with errors.Is.
var (
	// ErrExists means a CA or certificate is already there and was not replaced.
	ErrExists = errors.New("pki: already exists")
	// ErrNoCA means the directory holds no CA: run Init (vigil pki init) first.
	ErrNoCA = errors.New("pki: no CA")
)

// DefaultDir is the CA directory of a state directory.
func DefaultDir(state string) string { return filepath.Join(state, "pki") }

// CAPath is the CA certificate's path: the file brokers and clients trust.
func CAPath(dir string) string { return filepath.Join(dir, CACertFile) }

// Paths returns where the certificate and key of cn of kind k are (or would be).
func Paths(dir string, k Kind, cn string) (certPath, keyPath string) {
	base := filepath.Join(dir, k.subdir(), cn)
	return base + ".crt", base + ".key"
}

// Init creates a CA named name (its subject CN) in dir, valid for
// DefaultCAValidity from now. It refuses (ErrExists) if dir already holds a
// CA certificate or key. dir is created, or restricted, to mode 0700.
func Init(dir, name string, now time.Time) error {
	if name == "" {
		return errors.New("pki: init: the CA needs a name")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("pki: init %s: %w", dir, err)
	}
	// The directory may have existed with looser permissions; it is about to
	// hold the CA key.
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("pki: init %s: %w", dir, err)
	}
	certPath, keyPath := CAPath(dir), filepath.Join(dir, CAKeyFile)
	if err := refuseExisting(certPath, keyPath); err != nil {
		return fmt.Errorf("pki: init %s: %w", dir, err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("pki: init: generate key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return fmt.Errorf("pki: init: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"Vigil"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(DefaultCAValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		// Only leaf certificates below this CA: a stolen device key cannot
		// be turned into an intermediate CA.
		MaxPathLen:     0,
		MaxPathLenZero: true,
		KeyUsage:       x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("pki: init: create certificate: %w", err)
	}
	// Key first: a crash before the certificate is written leaves a key
	// without a certificate, which Init then refuses to overwrite (the
	// operator removes it), rather than a certificate nobody can sign with.
	if err := writeKey(keyPath, key, false); err != nil {
		return fmt.Errorf("pki: init: %w", err)
	}
	if err := writeCert(certPath, der, false); err != nil {
		return fmt.Errorf("pki: init: %w", err)
	}
	return nil
}

// Issue creates a key and a certificate for cn, signed by the CA in dir, and
// returns where it wrote them. Device and Gateway certificates are for client
// authentication and cn must be a valid device or gateway id
// (devices.ValidID); hosts must be empty. Server certificates are for server
// authentication and need at least one host (IP address or DNS name). A zero
// validity means DefaultLeafValidity; no certificate outlives the CA. Issue
// refuses (ErrExists) if the certificate or key is already there: use Reissue
// to replace them.
func Issue(dir, cn string, kind Kind, hosts []string, validity time.Duration, now time.Time) (certPath, keyPath string, err error) {
	return issue(dir, cn, kind, hosts, validity, now, false)
}

// Reissue is Issue that replaces an existing certificate and key, for a
// device whose key was lost or whose certificate is about to expire. The old
// certificate stays valid until it expires: the broker does not check a
// revocation list, so a device that was stolen needs its id retired instead.
func Reissue(dir, cn string, kind Kind, hosts []string, validity time.Duration, now time.Time) (certPath, keyPath string, err error) {
	return issue(dir, cn, kind, hosts, validity, now, true)
}

func issue(dir, cn string, kind Kind, hosts []string, validity time.Duration, now time.Time, replace bool) (certPath, keyPath string, err error) {
	tmpl, err := template(cn, kind, hosts)
	if err != nil {
		return "", "", err
	}
	if validity < 0 {
		return "", "", fmt.Errorf("pki: issue %s: validity %s is negative", cn, validity)
	}
	if validity == 0 {
		validity = DefaultLeafValidity
	}
	ca, caKey, err := loadCA(dir)
	if err != nil {
		return "", "", err
	}
	if now.Before(ca.NotBefore) || now.After(ca.NotAfter) {
		return "", "", fmt.Errorf("pki: issue %s: the CA in %s is valid from %s to %s, not now",
			cn, dir, ca.NotBefore.Format(time.RFC3339), ca.NotAfter.Format(time.RFC3339))
	}
	certPath, keyPath = Paths(dir, kind, cn)
	if !replace {
		if err := refuseExisting(certPath, keyPath); err != nil {
			return "", "", fmt.Errorf("pki: issue %s %s: %w", kind, cn, err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(certPath), 0o700); err != nil {
		return "", "", fmt.Errorf("pki: issue %s: %w", cn, err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("pki: issue %s: generate key: %w", cn, err)
	}
	if tmpl.SerialNumber, err = randomSerial(); err != nil {
		return "", "", fmt.Errorf("pki: issue %s: %w", cn, err)
	}
	tmpl.NotBefore = now.Add(-backdate)
	tmpl.NotAfter = now.Add(validity)
	if tmpl.NotAfter.After(ca.NotAfter) {
		tmpl.NotAfter = ca.NotAfter // a certificate cannot outlive its issuer
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return "", "", fmt.Errorf("pki: issue %s: create certificate: %w", cn, err)
	}
	// Key before certificate, as in Init.
	if err := writeKey(keyPath, key, replace); err != nil {
		return "", "", fmt.Errorf("pki: issue %s: %w", cn, err)
	}
	if err := writeCert(certPath, der, replace); err != nil {
		return "", "", fmt.Errorf("pki: issue %s: %w", cn, err)
	}
	return certPath, keyPath, nil
}

// serverNameRE is what a server certificate's name may be: it names a file,
// so no path separators, and it is usually a host name.
var serverNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$`)

// dnsNameRE is a DNS name for a subject alternative name, optionally with a
// leading wildcard label.
var dnsNameRE = regexp.MustCompile(`^(\*\.)?([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$`)

// template checks the request and returns the certificate without serial and
// validity.
func template(cn string, kind Kind, hosts []string) (*x509.Certificate, error) {
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: cn, OrganizationalUnit: []string{string(kind)}},
		BasicConstraintsValid: true,
		// ECDSA keys sign the handshake; they never encipher keys.
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	switch kind {
	case Device, Gateway:
		// The broker takes the client's identity from the CN (Mosquitto's
		// use_identity_as_username, the embedded broker's auth hook), and
		// the ACLs put it in topics: it must be an id that is safe there.
		if !devices.ValidID(cn) {
			return nil, fmt.Errorf("pki: issue %s: %q is not a valid %s id (1-64 of A-Z a-z 0-9 _ -, starting with a letter or digit)", kind, cn, kind)
		}
		if len(hosts) > 0 {
			return nil, fmt.Errorf("pki: issue %s %s: hosts are for server certificates only", kind, cn)
		}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	case Server:
		if !serverNameRE.MatchString(cn) {
			return nil, fmt.Errorf("pki: issue server: name %q must be 1-253 of A-Z a-z 0-9 . _ -, starting with a letter or digit", cn)
		}
		if len(hosts) == 0 {
			return nil, fmt.Errorf("pki: issue server %s: needs at least one host name or IP address that clients connect to", cn)
		}
		for _, h := range hosts {
			if ip := net.ParseIP(h); ip != nil {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			} else if len(h) <= 253 && dnsNameRE.MatchString(h) {
				tmpl.DNSNames = append(tmpl.DNSNames, h)
			} else {
				return nil, fmt.Errorf("pki: issue server %s: host %q is neither an IP address nor a DNS name", cn, h)
			}
		}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	default:
		return nil, fmt.Errorf("pki: issue %s: kind %q is not device, gateway or server", cn, kind)
	}
	return tmpl, nil
}

// randomSerial is a positive random 128-bit serial number (RFC 5280 allows up
// to 20 octets; unpredictable serials are what the CA/Browser Forum asks for).
func randomSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	for {
		n, err := rand.Int(rand.Reader, limit)
		if err != nil {
			return nil, fmt.Errorf("serial number: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

// LoadCA returns the CA certificate in dir.
func LoadCA(dir string) (*x509.Certificate, error) {
	raw, err := os.ReadFile(CAPath(dir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w in %s (run vigil pki init)", ErrNoCA, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	b, _ := pem.Decode(raw)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("pki: %s: not a PEM certificate", CAPath(dir))
	}
	ca, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("pki: %s: %w", CAPath(dir), err)
	}
	return ca, nil
}

// loadCA returns the CA certificate and its key, checking that they match.
func loadCA(dir string) (*x509.Certificate, crypto.Signer, error) {
	ca, err := LoadCA(dir)
	if err != nil {
		return nil, nil, err
	}
	keyPath := filepath.Join(dir, CAKeyFile)
	raw, err := os.ReadFile(keyPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("%w key in %s: this directory has only the CA certificate", ErrNoCA, dir)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("pki: %w", err)
	}
	b, _ := pem.Decode(raw)
	if b == nil || b.Type != "PRIVATE KEY" {
		return nil, nil, fmt.Errorf("pki: %s: not a PKCS#8 PEM private key", keyPath)
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		// The parse error describes the structure, never the key itself.
		return nil, nil, fmt.Errorf("pki: %s: %w", keyPath, err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok || !key.PublicKey.Equal(ca.PublicKey) {
		return nil, nil, fmt.Errorf("pki: %s does not belong to %s", keyPath, CAPath(dir))
	}
	return ca, key, nil
}

func refuseExisting(paths ...string) error {
	for _, p := range paths {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("%s: %w", p, ErrExists)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

func writeKey(path string, key *ecdsa.PrivateKey, replace bool) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encode key: %w", err)
	}
	return writeFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600, replace)
}

func writeCert(path string, der []byte, replace bool) error {
	return writeFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644, replace)
}

// writeFile puts data at path durably: a temporary file in the same
// directory, created with the final mode (a key is never readable by others,
// not even for a moment), fsynced, then linked into place (which fails if
// path exists, so two concurrent issuers cannot overwrite each other) or
// renamed over it when replacing, and finally the directory is fsynced so the
// new name survives a power cut.
func writeFile(path string, data []byte, mode os.FileMode, replace bool) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		tmp.Close()
		os.Remove(tmp.Name()) // after a link the data lives on under path
	}()
	// CreateTemp makes the file 0600; a certificate may be read by others
	// (Mosquitto runs as its own user).
	if err := tmp.Chmod(mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	// fsync before the name appears: otherwise a crash could leave the new
	// name pointing at an empty file.
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("write %s: fsync: %w", path, err)
	}
	if replace {
		err = os.Rename(tmp.Name(), path)
	} else {
		err = os.Link(tmp.Name(), path)
		if errors.Is(err, fs.ErrExist) {
			err = ErrExists
		}
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("write %s: fsync dir: %w", path, err)
	}
	return nil
}
