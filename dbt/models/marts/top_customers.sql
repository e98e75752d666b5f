with customers as (
    select * from {{ ref('customers') }}
),

buyers as (
    select * from customers
    where revenue_order_count > 0
),

ranked as (
    select
        row_number() over (order by lifetime_revenue desc, customer_id) as revenue_rank,
        customer_id,
        customer_name,
        email,
        country,
        lifetime_revenue,
        revenue_order_count as order_count,
        first_revenue_order_at as first_order_at,
        last_revenue_order_at as last_order_at
    from buyers
)

select * from ranked
