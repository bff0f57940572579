//! Policy commands of the metadata machine: a policy is set or cleared, then every queue and
//! exchange of its vhost is matched again; queues whose settings in force changed are
//! reported (`MetaEffect::QueueConfigured`) so their runners get the new settings through
//! their own logs.

use super::MetaMachine;
use crate::broker::Error;
use crate::broker::policy::{ApplyTo, Policy};
use crate::meta::MetaEffect;
use amq_protocol::types::FieldTable;
use std::sync::Arc;

impl MetaMachine {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn set_policy(
        &mut self,
        vhost: &str,
        name: String,
        pattern: String,
        apply_to: &str,
        priority: i64,
        definition: FieldTable,
        effects: &mut Vec<MetaEffect>,
    ) -> Result<(), Error> {
        let apply_to = ApplyTo::parse(apply_to)
            .ok_or_else(|| Error::precondition(format!("invalid apply-to '{apply_to}' for policy '{name}'")))?;
        let p = Policy::new(name.clone(), pattern, apply_to, priority, definition).map_err(Error::precondition)?;
        let v = self.vhost_mut(vhost)?;
        v.policies.insert(name, Arc::new(p));
        effects.extend(v.refresh_policies().into_iter().map(MetaEffect::QueueConfigured));
        Ok(())
    }

    pub(super) fn clear_policy(&mut self, vhost: &str, name: &str, effects: &mut Vec<MetaEffect>) -> Result<(), Error> {
        let v = self.vhost_mut(vhost)?;
        if v.policies.remove(name).is_none() {
            return Err(Error::not_found(format!("no policy '{name}' in vhost '{vhost}'")));
        }
        effects.extend(v.refresh_policies().into_iter().map(MetaEffect::QueueConfigured));
        Ok(())
    }
}
