-- RetailFlow OLTP schema (MySQL 8 / MariaDB 10.11).
-- One file, used by the generator, the local stack and the chart's init Job.
-- Every table carries created_at and updated_at (ON UPDATE) with microseconds so that
-- incremental readers can use (updated_at, primary key) as a strictly ordered cursor;
-- the (updated_at, <pk>) indexes serve exactly that read. All timestamps are UTC: writers set
-- `time_zone = '+00:00'` on their sessions so that ON UPDATE current_timestamp(6) is UTC as well.
-- Foreign keys are unnamed (the server names them <table>_ibfk_<n>): `seed --truncate` loads into
-- shadow tables and swaps them in with RENAME TABLE, which renames such keys with their table.
-- Store locations are not a table here: they come from data/store_locations.csv,
-- so orders.store_id has no foreign key.

create table if not exists customers (
    customer_id bigint unsigned not null,
    first_name varchar(64) not null,
    last_name varchar(64) not null,
    email varchar(191) not null,
    city varchar(96) not null,
    country char(2) not null,
    signed_up_at datetime(6) not null,
    created_at datetime(6) not null default current_timestamp(6),
    updated_at datetime(6) not null default current_timestamp(6) on update current_timestamp(6),
    primary key (customer_id),
    unique key uq_customers_email (email),
    key ix_customers_updated (updated_at, customer_id)
) engine = InnoDB default charset = utf8mb4;

create table if not exists products (
    product_id bigint unsigned not null,
    sku varchar(32) not null,
    name varchar(160) not null,
    category varchar(48) not null,
    unit_price decimal(10, 2) not null,
    created_at datetime(6) not null default current_timestamp(6),
    updated_at datetime(6) not null default current_timestamp(6) on update current_timestamp(6),
    primary key (product_id),
    unique key uq_products_sku (sku),
    key ix_products_category (category),
    key ix_products_updated (updated_at, product_id),
    constraint ck_products_price check (unit_price >= 0)
) engine = InnoDB default charset = utf8mb4;

create table if not exists orders (
    order_id bigint unsigned not null,
    customer_id bigint unsigned not null,
    channel enum('online', 'store') not null,
    store_id int unsigned null,
    status enum('placed', 'paid', 'shipped', 'delivered', 'cancelled', 'returned') not null,
    ordered_at datetime(6) not null,
    created_at datetime(6) not null default current_timestamp(6),
    updated_at datetime(6) not null default current_timestamp(6) on update current_timestamp(6),
    primary key (order_id),
    key ix_orders_customer (customer_id),
    key ix_orders_ordered (ordered_at),
    key ix_orders_updated (updated_at, order_id),
    foreign key (customer_id) references customers (customer_id),
    -- in-store sales name their store; online sales have none
    constraint ck_orders_store check ((channel = 'store') = (store_id is not null))
) engine = InnoDB default charset = utf8mb4;

create table if not exists order_items (
    order_item_id bigint unsigned not null,
    order_id bigint unsigned not null,
    product_id bigint unsigned not null,
    quantity int unsigned not null,
    unit_price decimal(10, 2) not null,
    created_at datetime(6) not null default current_timestamp(6),
    updated_at datetime(6) not null default current_timestamp(6) on update current_timestamp(6),
    primary key (order_item_id),
    key ix_order_items_order (order_id),
    key ix_order_items_product (product_id),
    key ix_order_items_updated (updated_at, order_item_id),
    foreign key (order_id) references orders (order_id),
    foreign key (product_id) references products (product_id),
    constraint ck_order_items_quantity check (quantity > 0),
    constraint ck_order_items_price check (unit_price >= 0)
) engine = InnoDB default charset = utf8mb4;
