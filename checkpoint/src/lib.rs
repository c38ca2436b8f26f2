//! godwit embedded dumper
