//! The metadata machine's snapshot: its whole state (vhosts with their exchanges, queues,
//! bindings, permissions and policies; users; the node registry) under [`STATE_VERSION`],
//! read back from any earlier version.

use super::*;

pub(super) fn encode_state(s: &MetaState) -> Vec<u8> {
    let mut w = Writer::new();
    w.u8(STATE_VERSION);
    w.u64(s.next_group);
    w.u32(s.users.len() as u32);
    for u in s.users.values() {
        w.str(&u.name).str(&u.password_hash);
        put_strings(&mut w, &u.tags);
    }
    w.u32(s.vhosts.len() as u32);
    for v in s.vhosts.values() {
        w.str(&v.name);
        w.u32(v.permissions.len() as u32);
        for (user, p) in &v.permissions {
            w.str(user).str(&p.source[0]).str(&p.source[1]).str(&p.source[2]);
        }
        w.u32(v.queues.len() as u32);
        for q in v.queues.values() {
            w.str(&q.name).bool(q.durable).bool(q.auto_delete);
            match q.exclusive_owner {
                Some(c) => w.u8(1).u64(c.0),
                None => w.u8(0),
            };
            put_table(&mut w, &q.args);
            w.u64(q.group).u64(q.home);
            put_nodes(&mut w, &q.members);
            put_nodes(&mut w, &q.founders);
        }
        w.u32(v.exchanges.len() as u32);
        for x in v.exchanges.values() {
            w.str(&x.name).u8(kind_byte(x.exchange_type()));
            if let Some(g) = x.delay_group {
                w.u64(g);
                put_nodes(&mut w, &x.delay_members);
                put_nodes(&mut w, &x.delay_founders);
            }
            w.bool(x.durable).bool(x.auto_delete).bool(x.internal);
            put_table(&mut w, &x.args);
            w.u32(x.bindings.len() as u32);
            for b in x.bindings.iter() {
                put_dest(&mut w, &b.destination);
                w.str(&b.key);
                put_table(&mut w, &b.args);
            }
        }
        w.str(&v.description);
        put_strings(&mut w, &v.tags);
        w.bool(v.tracing);
        w.u32(v.policies.len() as u32);
        for p in v.policies.values() {
            w.str(&p.name).str(&p.pattern).str(p.apply_to.as_str()).u64(p.priority as u64);
            put_table(&mut w, &p.definition);
        }
    }
    w.u64(s.next_node);
    w.u32(s.nodes.len() as u32);
    for n in s.nodes.values() {
        put_node(&mut w, n);
    }
    put_nodes(&mut w, &s.forgotten.iter().copied().collect::<Vec<_>>());
    w.buf
}

pub(super) fn decode_state(bytes: &Bytes) -> Result<MetaMachine, CodecError> {
    let mut r = Reader::new(bytes.clone());
    let v = r.u8()?;
    if !(1..=STATE_VERSION).contains(&v) {
        return Err(CodecError(format!("metadata state version {v}, this build reads 1 to {STATE_VERSION}")));
    }
    let mut state = MetaState { next_group: r.u64()?, ..Default::default() };
    for _ in 0..r.u32()? {
        let (name, password_hash, tags) = (r.str()?, r.str()?, get_strings(&mut r)?);
        state.users.insert(name.clone(), Arc::new(User { name, password_hash, tags }));
    }
    for _ in 0..r.u32()? {
        let mut vh = Vhost { name: r.str()?, ..Default::default() };
        for _ in 0..r.u32()? {
            let (user, c, w, rd) = (r.str()?, r.str()?, r.str()?, r.str()?);
            let p = Permissions::compile(&c, &w, &rd).map_err(|e| CodecError(format!("permission regex: {e}")))?;
            vh.permissions.insert(user, Arc::new(p));
        }
        for _ in 0..r.u32()? {
            let (name, durable, auto_delete) = (r.str()?, r.bool()?, r.bool()?);
            let exclusive_owner = match r.u8()? {
                0 => None,
                1 => Some(ConnectionId(r.u64()?)),
                t => return Err(CodecError(format!("bad owner tag {t}"))),
            };
            let args = get_table(&mut r)?;
            let group = r.u64()?;
            let home = if v >= 3 { r.u64()? } else { 1 };
            let members = if v >= 4 { get_nodes(&mut r)? } else { Vec::new() };
            let founders = if v >= 5 { get_nodes(&mut r)? } else { members.clone() };
            let parsed =
                parse_queue_args(&args, &queue_what(&vh.name, &name)).map_err(|e| CodecError(e.reply_text()))?;
            let rec = QueueRecord {
                vhost: vh.name.clone(),
                name: name.clone(),
                durable,
                exclusive_owner,
                group,
                home,
                members,
                founders,
                auto_delete,
                args,
                effective: parsed.clone(),
                parsed,
                policy: None,
            };
            vh.queues.insert(name, Arc::new(rec));
        }
        for _ in 0..r.u32()? {
            let (name, ty) = (r.str()?, get_kind(&mut r)?);
            let delay_group = if ty.delayed { Some(r.u64()?) } else { None };
            let delay_members = if ty.delayed && v >= 6 { get_nodes(&mut r)? } else { Vec::new() };
            let delay_founders = if ty.delayed && v >= 7 { get_nodes(&mut r)? } else { delay_members.clone() };
            let (durable, auto_delete, internal) = (r.bool()?, r.bool()?, r.bool()?);
            let args = get_table(&mut r)?;
            let kind = ty.kind;
            let mut x = Exchange::new(name.clone(), kind, durable, auto_delete, internal, args);
            x.delay_group = delay_group;
            x.delay_members = delay_members;
            x.delay_founders = delay_founders;
            for _ in 0..r.u32()? {
                let binding = Binding { destination: get_dest(&mut r)?, key: r.str()?, args: get_table(&mut r)? };
                x.bindings.add(kind, binding).map_err(|e| CodecError(e.reply_text()))?;
            }
            vh.exchanges.insert(name, Arc::new(x));
        }
        if v >= 2 {
            vh.description = r.str()?;
            vh.tags = get_strings(&mut r)?;
            vh.tracing = r.bool()?;
            for _ in 0..r.u32()? {
                let (name, pattern, apply_to, priority) = (r.str()?, r.str()?, r.str()?, r.u64()? as i64);
                let definition = get_table(&mut r)?;
                let apply_to =
                    ApplyTo::parse(&apply_to).ok_or_else(|| CodecError(format!("bad apply-to {apply_to}")))?;
                let p = Policy::new(name.clone(), pattern, apply_to, priority, definition).map_err(CodecError)?;
                vh.policies.insert(name, Arc::new(p));
            }
            vh.refresh_policies();
        }
        state.vhosts.insert(vh.name.clone(), Arc::new(vh));
    }
    if v >= 5 {
        state.next_node = r.u64()?;
        for _ in 0..r.u32()? {
            let n = get_node(&mut r)?;
            state.nodes.insert(n.id, Arc::new(n));
        }
        state.forgotten = get_nodes(&mut r)?.into_iter().collect();
    }
    r.finish()?;
    Ok(MetaMachine { state })
}
