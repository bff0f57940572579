//! Who may talk to this node: the cluster name and a proof of the shared secret, in every
//! call's metadata. The proof is SHA-256 over the name and the secret (the secret itself never
//! crosses the wire); it is compared in constant time. A refusal is logged here and answered
//! with `UNAUTHENTICATED`, which the caller logs too.

use sha2::{Digest, Sha256};
use tonic::metadata::MetadataValue;
use tonic::{Request, Status};

const NAME_KEY: &str = "x-warren-cluster";
const PROOF_KEY: &str = "x-warren-proof";
/// The calling node's id, on streams (whose frames do not say who sent them).
const NODE_KEY: &str = "x-warren-node";

/// Adds the calling node's id to an outgoing call.
pub fn attach_node<T>(req: &mut Request<T>, me: u64) {
    if let Ok(v) = MetadataValue::try_from(me.to_string()) {
        req.metadata_mut().insert(NODE_KEY, v);
    }
}

/// The calling node's id, from an incoming call.
pub fn caller<T>(req: &Request<T>) -> Result<u64, Status> {
    req.metadata()
        .get(NODE_KEY)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Status::invalid_argument("the call does not say which node makes it"))
}

/// A cluster's name and the proof of its secret.
#[derive(Clone)]
pub struct Credentials {
    name: String,
    proof: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("name", &self.name).finish_non_exhaustive()
    }
}

impl Credentials {
    pub fn new(cluster_name: &str, secret: &str) -> Self {
        let mut h = Sha256::new();
        h.update(b"warren-cluster-v1\0");
        h.update(cluster_name.as_bytes());
        h.update(b"\0");
        h.update(secret.as_bytes());
        let proof = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        Self { name: cluster_name.to_owned(), proof }
    }

    /// Adds the credentials to an outgoing call.
    pub fn attach<T>(&self, req: &mut Request<T>) {
        let md = req.metadata_mut();
        if let Ok(v) = MetadataValue::try_from(self.name.as_str()) {
            md.insert(NAME_KEY, v);
        }
        if let Ok(v) = MetadataValue::try_from(self.proof.as_str()) {
            md.insert(PROOF_KEY, v);
        }
    }

    /// Checks an incoming call (the interceptor of the service).
    pub fn check<T>(&self, req: &Request<T>) -> Result<(), Status> {
        let md = req.metadata();
        let peer = req.remote_addr().map_or_else(|| "unknown".to_owned(), |a| a.to_string());
        let name = md.get(NAME_KEY).and_then(|v| v.to_str().ok()).unwrap_or("");
        if name != self.name {
            tracing::warn!(%peer, cluster = %name, ours = %self.name, "refused a node of another cluster");
            return Err(Status::unauthenticated(format!("this node belongs to cluster '{}'", self.name)));
        }
        let proof = md.get(PROOF_KEY).map(|v| v.as_bytes()).unwrap_or(b"");
        if !constant_time_eq(proof, self.proof.as_bytes()) {
            tracing::warn!(%peer, "refused a node with a different cluster secret");
            return Err(Status::unauthenticated("wrong cluster secret"));
        }
        Ok(())
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_same_name_and_secret_pass() {
        let ours = Credentials::new("prod", "s3cret");
        let call = |c: &Credentials| {
            let mut r = Request::new(());
            c.attach(&mut r);
            ours.check(&r)
        };
        assert!(call(&Credentials::new("prod", "s3cret")).is_ok());
        assert_eq!(call(&Credentials::new("prod", "other")).unwrap_err().code(), tonic::Code::Unauthenticated);
        assert_eq!(call(&Credentials::new("test", "s3cret")).unwrap_err().code(), tonic::Code::Unauthenticated);
        assert!(ours.check(&Request::new(())).is_err(), "no credentials at all");
        assert!(!format!("{ours:?}").contains(&ours.proof), "the proof stays out of logs");
    }
}
