/** The help of `migrate`, apart from its code so that help loads none of the store. */
export const MIGRATE_USAGE = `  migrate               apply the PostgreSQL schema migrations and exit
    --database-url URL    the database (POSTERN_DATABASE_URL)
    --print               print the SQL instead; connects to nothing`;
