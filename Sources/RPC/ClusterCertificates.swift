import Crypto
import Foundation
import X509

/// Creates the cluster's certificates: one CA, and per node a certificate signed by it that serves as
/// both TLS server and TLS client identity (mutual TLS). Keys are ECDSA P-256; everything is PEM text.
/// `baton certs` writes these to files; tests make them in memory.
public enum ClusterCertificates {
    /// A certificate and its private key, PEM-encoded.
    public struct Issued: Sendable, Equatable {
        public var certificatePEM: String
        public var privateKeyPEM: String
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
    /// client. The name and roles are encoded as `NodeIdentity` documents; peers authorize every request by them.
    public static func issueNode(
        _ nodeName: String, roles: Set<NodeRole>, authority: Issued, validDays: Int = 825
    ) throws(RPCError) -> Issued {
        guard !nodeName.isEmpty, !roles.isEmpty else {
            throw RPCError(.invalidArgument, "a node certificate needs a name and at least one role (got \"\(nodeName)\", \(roles.count) roles)")
        }
        let identity = NodeIdentity(name: nodeName, roles: roles)
        do {
            let authorityCertificate = try Certificate(pemEncoded: authority.certificatePEM)
            let authorityKey = try P256.Signing.PrivateKey(pemRepresentation: authority.privateKeyPEM)
            let key = P256.Signing.PrivateKey()
            let now = Date()
            let certificate = try Certificate(
                version: .v3, serialNumber: Certificate.SerialNumber(),
                publicKey: Certificate.PublicKey(key.publicKey),
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
            return Issued(certificatePEM: try certificate.serializeAsPEM().pemString, privateKeyPEM: key.pemRepresentation)
        } catch {
            throw RPCError(.certificate, "could not issue a certificate for node \(identity)", cause: error)
        }
    }

    /// The TLS settings of a node holding `node`, in a cluster whose CA certificate is `authorityPEM`.
    public static func tls(node: Issued, authorityPEM: String) -> NodeTLS {
        NodeTLS(certificateAuthorityPEM: authorityPEM, certificateChainPEM: node.certificatePEM, privateKeyPEM: node.privateKeyPEM)
    }
}
