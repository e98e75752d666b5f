with source as (
    select * from {{ source('retail', 'customers') }}
),

renamed as (
    select
        cast(customer_id as bigint) as customer_id,
        cast(first_name as varchar) as first_name,
        cast(last_name as varchar) as last_name,
        cast(email as varchar) as email,
        cast(city as varchar) as city,
        cast(country as varchar) as country,
        cast(signed_up_at as timestamp) as signed_up_at,
        cast(created_at as timestamp) as created_at,
        cast(updated_at as timestamp) as updated_at,
        _airbyte_extracted_at as loaded_at
    from source
)

select * from renamed
