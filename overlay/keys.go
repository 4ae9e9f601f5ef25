package overlay

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"

	"github.com/libp2p/go-libp2p/core/crypto"
)

// Signer signs registration records. Keys are ECDSA P-256 because every
// browser's WebCrypto can make a non-extractable P-256 key: a browser owns
// its AOR with the same kind of key a peer uses for the phones it hosts.
type Signer interface {
	// PublicKey returns the uncompressed SEC 1 point (65 bytes), the format
	// WebCrypto's exportKey("raw") produces.
	PublicKey() []byte
	// Sign returns an IEEE P1363 signature (r‖s, 64 bytes) over
	// SHA-256(msg), the format WebCrypto's sign() produces.
	Sign(msg []byte) ([]byte, error)
}

// p256PointLen is the length of an uncompressed P-256 point.
const p256PointLen = 65

// P256Key is a local ECDSA P-256 Signer.
type P256Key struct {
	priv  *ecdsa.PrivateKey
	pub   []byte
	batch batcher // batches the record signatures of concurrent callers
}

// NewP256Key generates a fresh key.
func NewP256Key() (*P256Key, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating P-256 key: %w", err)
	}
	return wrapP256(priv)
}

func wrapP256(priv *ecdsa.PrivateKey) (*P256Key, error) {
	pub, err := priv.PublicKey.Bytes()
	if err != nil {
		return nil, fmt.Errorf("encoding P-256 public key: %w", err)
	}
	return &P256Key{priv: priv, pub: pub}, nil
}

// PublicKey implements Signer.
func (k *P256Key) PublicKey() []byte { return k.pub }

// Sign implements Signer.
func (k *P256Key) Sign(msg []byte) ([]byte, error) {
	h := sha256.Sum256(msg)
	r, s, err := ecdsa.Sign(rand.Reader, k.priv, h[:])
	if err != nil {
		return nil, fmt.Errorf("signing: %w", err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return sig, nil
}

// verifyP256 checks an IEEE P1363 signature by the raw public key pub.
func verifyP256(pub, msg, sig []byte) error {
	if len(sig) != 64 {
		return fmt.Errorf("%w: signature is %d bytes, want 64", ErrBadSignature, len(sig))
	}
	key, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), pub)
	if err != nil {
		return fmt.Errorf("%w: public key: %v", ErrBadSignature, err)
	}
	h := sha256.Sum256(msg)
	r := new(big.Int).SetBytes(sig[:32])
	s := new(big.Int).SetBytes(sig[32:])
	if !ecdsa.Verify(key, h[:], r, s) {
		return ErrBadSignature
	}
	return nil
}

// LoadOrCreateP256Key reads a PKCS#8 PEM key from path, or creates one
// (mode 0600) when the file does not exist.
func LoadOrCreateP256Key(path string) (*P256Key, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		k, err := NewP256Key()
		if err != nil {
			return nil, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(k.priv)
		if err != nil {
			return nil, fmt.Errorf("encoding owner key: %w", err)
		}
		pemData := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
		if err := writeFileAtomic(path, pemData); err != nil {
			return nil, err
		}
		return k, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading owner key: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%w: %s holds no PEM block", ErrBadConfig, path)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parsing owner key %s: %w", path, err)
	}
	ec, ok := key.(*ecdsa.PrivateKey)
	if !ok || ec.Curve != elliptic.P256() {
		return nil, fmt.Errorf("%w: %s is not a P-256 key", ErrBadConfig, path)
	}
	return wrapP256(ec)
}

// LoadOrCreateIdentity reads the node's libp2p Ed25519 key from path, or
// creates it, so that the node keeps its ID across restarts.
func LoadOrCreateIdentity(path string) (crypto.PrivKey, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		priv, _, err := crypto.GenerateEd25519Key(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("generating node key: %w", err)
		}
		raw, err := crypto.MarshalPrivateKey(priv)
		if err != nil {
			return nil, fmt.Errorf("encoding node key: %w", err)
		}
		if err := writeFileAtomic(path, raw); err != nil {
			return nil, err
		}
		return priv, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading node key: %w", err)
	}
	priv, err := crypto.UnmarshalPrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("parsing node key %s (delete it to make a new identity): %w", path, err)
	}
	return priv, nil
}

// writeFileAtomic writes a private file so that a crash never leaves a
// half-written key behind.
func writeFileAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", filepath.Dir(path), err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("renaming %s: %w", tmp, err)
	}
	return nil
}
