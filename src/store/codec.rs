//! Versioned postcard envelopes for every value stored in redb.
//!
//! Layout: one byte naming the record's format version, then the postcard encoding of the record.
//! postcard's wire format is documented and stable, so the file outlives any one encoder release;
//! the version byte lets a later binary migrate records written by an earlier one.

use std::borrow::Borrow;

use redb::ReadableTable;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::StoreError;

/// A type stored as an envelope, with the format version it is written in.
pub trait Record: Serialize + DeserializeOwned {
    /// Bumped whenever the encoded shape changes; `decode` then needs a migration arm.
    const VERSION: u8;
    /// Used in error messages about a damaged record.
    const NAME: &'static str;
}

pub fn encode<T: Record>(record: &T) -> Result<Vec<u8>, StoreError> {
    let mut bytes = vec![T::VERSION];
    postcard::to_io(record, &mut bytes)
        .map_err(|e| StoreError::Corrupt(format!("encoding {}: {e}", T::NAME)))?;
    Ok(bytes)
}

/// Reads and decodes the record stored under `key`, if any.
pub fn get<'k, K, T>(
    table: &impl ReadableTable<K, &'static [u8]>,
    key: impl Borrow<K::SelfType<'k>>,
) -> Result<Option<T>, StoreError>
where
    K: redb::Key + 'static,
    T: Record,
{
    table.get(key)?.map(|raw| decode(raw.value())).transpose()
}

pub fn decode<T: Record>(bytes: &[u8]) -> Result<T, StoreError> {
    match bytes.split_first() {
        Some((&version, body)) if version == T::VERSION => postcard::from_bytes(body)
            .map_err(|e| StoreError::Corrupt(format!("decoding {}: {e}", T::NAME))),
        Some((version, _)) => Err(StoreError::Corrupt(format!(
            "{} has unknown format version {version}",
            T::NAME
        ))),
        None => Err(StoreError::Corrupt(format!("{} is empty", T::NAME))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Sample {
        a: u64,
        b: Option<String>,
    }

    impl Record for Sample {
        const VERSION: u8 = 3;
        const NAME: &'static str = "sample";
    }

    #[test]
    fn round_trips_and_checks_the_version() {
        let sample = Sample {
            a: 9,
            b: Some("x".into()),
        };
        let bytes = encode(&sample).unwrap();
        assert_eq!(bytes[0], 3);
        assert_eq!(decode::<Sample>(&bytes).unwrap(), sample);
        let mut newer = bytes.clone();
        newer[0] = 4;
        assert!(decode::<Sample>(&newer).is_err());
        assert!(decode::<Sample>(&[]).is_err());
        assert!(decode::<Sample>(&bytes[..2]).is_err());
    }
}
