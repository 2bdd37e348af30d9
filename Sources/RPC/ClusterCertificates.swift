import Crypto
import Foundation
import NIOSSL
import X509

/// Creates the cluster's certificates: one CA, and per node a certificate signed by it that serves as
/// both TLS server and TLS client identity (mutual TLS). Keys are ECDSA P-256; everything is PEM text.
/// `baton certs` writes these to files; tests make them in memory.
public enum ClusterCertificates {
    /// A certificate and its private key, PEM-encoded.
    public struct Issued: Sendable, Equatable {
        public var certificatePEM: String
        public var privateKeyPEM: String

        public init(certificatePEM: String, privateKeyPEM: String) {
            self.certificatePEM = certificatePEM
            self.privateKeyPEM = privateKeyPEM
        }
    }

    /// A new self-signed cluster CA named `name`, valid for `validDays` from now.
    public static func makeAuthority(name: String = "Baton cluster CA", validDays: Int = 3650) throws(RPCError) -> Issued {
        do {
            let key = P256.Signing.PrivateKey()
            let subject = try DistinguishedName { CommonName(name) }
            let now = Date()
            let certificate = try Certificate(
                version: .v3, serialNumber: Certificate.SerialNumber(),
                publicKey: Certificate.PublicKey(key.publicKey),
                notValidBefore: now.addingTimeInterval(-300),
                notValidAfter: now.addingTimeInterval(Double(validDays) * 86_400),
                issuer: subject, subject: subject, signatureAlgorithm: .ecdsaWithSHA256,
                extensions: try Certificate.Extensions {
                    Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                    Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                },
                issuerPrivateKey: Certificate.PrivateKey(key))
            return Issued(certificatePEM: try certificate.serializeAsPEM().pemString, privateKeyPEM: key.pemRepresentation)
        } catch {
            throw RPCError(.certificate, "could not create the cluster CA", cause: error)
        }
    }

    /// A node certificate for `nodeName` acting in `roles`, signed by `authority`, usable as TLS server and
    /// client, with a new key. The name and roles are encoded as `NodeIdentity` documents; peers authorize every
    /// request by them.
    public static func issueNode(
        _ nodeName: String, roles: Set<NodeRole>, authority: Issued, validDays: Int = 825
    ) throws(RPCError) -> Issued {
        let key = P256.Signing.PrivateKey()
        let certificate = try signNode(
            nodeName, roles: roles, publicKey: Certificate.PublicKey(key.publicKey), authority: authority,
            validDays: validDays)
        do {
            return Issued(certificatePEM: try certificate.serializeAsPEM().pemString, privateKeyPEM: key.pemRepresentation)
        } catch {
            throw RPCError(.certificate, "could not encode the certificate of node \(nodeName)", cause: error)
        }
    }

    /// A node certificate for `nodeName` acting in `roles` over `publicKey` (a key made elsewhere: a joining
    /// node's, from its signing request), signed by `authority`. The one place node certificates are made.
    public static func signNode(
        _ nodeName: String, roles: Set<NodeRole>, publicKey: Certificate.PublicKey, authority: Issued, validDays: Int = 825
    ) throws(RPCError) -> Certificate {
        guard !nodeName.isEmpty, !roles.isEmpty else {
            throw RPCError(.invalidArgument, "a node certificate needs a name and at least one role (got \"\(nodeName)\", \(roles.count) roles)")
        }
        let identity = NodeIdentity(name: nodeName, roles: roles)
        do {
            let authorityCertificate = try Certificate(pemEncoded: authority.certificatePEM)
            let authorityKey = try P256.Signing.PrivateKey(pemRepresentation: authority.privateKeyPEM)
            let now = Date()
            return try Certificate(
                version: .v3, serialNumber: Certificate.SerialNumber(),
                publicKey: publicKey,
                notValidBefore: now.addingTimeInterval(-300),
                notValidAfter: now.addingTimeInterval(Double(validDays) * 86_400),
                issuer: authorityCertificate.subject, subject: try DistinguishedName { CommonName(nodeName) },
                signatureAlgorithm: .ecdsaWithSHA256,
                extensions: try Certificate.Extensions {
                    Critical(BasicConstraints.notCertificateAuthority)
                    Critical(KeyUsage(digitalSignature: true))
                    try ExtendedKeyUsage([.serverAuth, .clientAuth])
                    identity.subjectAlternativeNames
                },
                issuerPrivateKey: Certificate.PrivateKey(authorityKey))
        } catch {
            throw RPCError(.certificate, "could not issue a certificate for node \(identity)", cause: error)
        }
    }

    /// The SHA-256 of the first certificate in `pem` (its DER bytes), lowercase hex: what a join token pins, and
    /// what `openssl x509 -in ca.pem -noout -fingerprint -sha256` prints (there upper-case, with colons).
    public static func fingerprint(certificatePEM pem: String) throws(RPCError) -> String {
        do {
            let der = try NIOSSLCertificate(bytes: Array(pem.utf8), format: .pem).toDERBytes()
            return JoinToken.hex(SHA256.hash(data: der))
        } catch {
            throw RPCError(.certificate, "cannot read the certificate to fingerprint it", cause: error)
        }
    }

    /// Checks that `authority`'s private key belongs to its certificate (a CA key file and `ca.pem` that do not
    /// match would sign certificates no node trusts).
    public static func checkAuthority(_ authority: Issued) throws(RPCError) {
        let certificate: Certificate, key: P256.Signing.PrivateKey
        do {
            certificate = try Certificate(pemEncoded: authority.certificatePEM)
            key = try P256.Signing.PrivateKey(pemRepresentation: authority.privateKeyPEM)
        } catch {
            throw RPCError(.certificate, "cannot read the CA certificate or its key (an ECDSA P-256 PEM key is expected)", cause: error)
        }
        guard certificate.publicKey == Certificate.PublicKey(key.publicKey) else {
            throw RPCError(.certificate, "the CA key does not belong to the CA certificate (subject \(certificate.subject))")
        }
        guard case .isCertificateAuthority? = try? certificate.extensions.basicConstraints else {
            throw RPCError(.certificate, "the CA certificate (subject \(certificate.subject)) is not a certificate authority")
        }
    }

    /// A PKCS#10 signing request for node `nodeName` over `key`, PEM-encoded: what `baton join` sends.
    public static func signingRequest(nodeName: String, key: P256.Signing.PrivateKey) throws(RPCError) -> String {
        do {
            let request = try CertificateSigningRequest(
                version: .v1, subject: try DistinguishedName { CommonName(nodeName) },
                privateKey: Certificate.PrivateKey(key), attributes: CertificateSigningRequest.Attributes())
            return try request.serializeAsPEM().pemString
        } catch {
            throw RPCError(.certificate, "could not make a signing request for node \(nodeName)", cause: error)
        }
    }

    /// The public key of a PEM signing request whose signature proves its sender holds the key; throws naming
    /// what is wrong (not PEM, not a PKCS#10 request, a bad signature, a key other than ECDSA P-256).
    public static func verifiedSigningRequestKey(_ pem: String) throws(RPCError) -> Certificate.PublicKey {
        let request: CertificateSigningRequest
        do { request = try CertificateSigningRequest(pemEncoded: pem) } catch {
            throw RPCError(.invalidArgument, "the signing request is not a PEM PKCS#10 certificate request", cause: error)
        }
        guard request.publicKey.isValidSignature(request.signature, for: request) else {
            throw RPCError(.invalidArgument, "the signing request's signature does not match its public key")
        }
        guard P256.Signing.PublicKey(request.publicKey) != nil else {
            throw RPCError(.invalidArgument, "the signing request's key is not ECDSA P-256 (as every node key is)")
        }
        return request.publicKey
    }

    /// The TLS settings of a node holding `node`, in a cluster whose CA certificate is `authorityPEM`.
    public static func tls(node: Issued, authorityPEM: String) -> NodeTLS {
        NodeTLS(certificateAuthorityPEM: authorityPEM, certificateChainPEM: node.certificatePEM, privateKeyPEM: node.privateKeyPEM)
    }
}
