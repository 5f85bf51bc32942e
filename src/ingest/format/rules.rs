//! Generic JSON feeds mapped to events by rules. (Being written.)

use super::{Message, Parsed};

pub struct Rules {
    name: String,
}

impl Rules {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn apply(&self, _message: &Message) -> Parsed {
        Parsed::Malformed("rules are not implemented yet".into())
    }
}

impl Rules {
    pub fn named(name: &str, _dir: Option<&std::path::Path>) -> Result<Rules, String> {
        Err(format!("no rules named {name:?} yet"))
    }
}
