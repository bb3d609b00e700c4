//! Host facts in the state file: per host, the facts last gathered and when (decision 0018).
//!
//! One versioned JSON value per host in `tables::FACTS`. The table is created by the first
//! write and an absent table reads as empty, so state files from before it need no
//! migration and older drovers simply do not see it. Nothing here gathers facts.

use std::collections::BTreeMap;

use redb::{ReadTransaction, ReadableTable};

use crate::facts::{FORMAT_VERSION, Gathered};
use crate::model::meta::HostName;
use crate::store::tables::FACTS;
use crate::store::{Error, Result, Store, corrupt, decode, encode, open_read, read, write_err};

impl Store {
    /// The facts recorded for every host (none without a state file).
    pub fn facts(&self) -> Result<BTreeMap<HostName, Gathered>> {
        self.reading(BTreeMap::new(), facts_in)
    }

    /// Records freshly gathered facts, replacing what each host had, in one transaction.
    pub fn record_facts(&self, gathered: &BTreeMap<HostName, Gathered>) -> Result<()> {
        self.write(|tx| {
            let mut table = tx.open_table(FACTS).map_err(write_err)?;
            for (host, facts) in gathered {
                table
                    .insert(host.as_str(), encode(facts)?.as_slice())
                    .map_err(write_err)?;
            }
            Ok(())
        })
    }
}

/// Every host's recorded facts, read in `tx`. A damaged value is `Error::Corrupt`, naming
/// the host.
pub(crate) fn facts_in(tx: &ReadTransaction) -> Result<BTreeMap<HostName, Gathered>> {
    let mut out = BTreeMap::new();
    let Some(table) = open_read(tx, FACTS)? else {
        return Ok(out);
    };
    for entry in table.iter().map_err(read)? {
        let (key, value) = entry.map_err(read)?;
        let host = HostName::parse(key.value())
            .map_err(|e| corrupt(format!("facts key {:?}: {e}", key.value())))?;
        let gathered: Gathered = decode(value.value(), &format!("facts of {host}"))?;
        if gathered.format_version != FORMAT_VERSION {
            return Err(Error::Corrupt {
                what: format!(
                    "facts of {host}: format version {} (this drover reads {FORMAT_VERSION})",
                    gathered.format_version
                ),
            });
        }
        out.insert(host, gathered);
    }
    Ok(out)
}
